"""The names of Fleet's own credentials, in a module that imports nothing (agents' processes import it quickly)."""

# Read from the environment of the CLI, the web and the workers (system/settings.py, system/git.py); never passed to
# an agent or a test run, even when a repository or a ticket names them.
CREDENTIAL_VARIABLES = frozenset({"FLEET_GIT_TOKEN", "FLEET_GITHUB_TOKEN", "FLEET_WEBHOOK_SECRET"})
