"""The names of Fleet's own credentials, in a module that imports nothing (agents' processes import it quickly)."""

# Read from the environment of the CLI, the web and the workers (system/settings.py, system/git.py); never passed to
# an agent or a test run, even when a repository or a ticket names them. The database's and the broker's URLs carry
# their passwords (docker-compose.yml writes them so): with the broker's, code could queue the workers' tasks.
CREDENTIAL_VARIABLES = frozenset(
    {"FLEET_GIT_TOKEN", "FLEET_GITHUB_TOKEN", "FLEET_WEBHOOK_SECRET", "FLEET_DATABASE_URL", "FLEET_BROKER_URL"}
)
