"""The names of Fleet's own credentials, and the shape of a secret's name, in a module that imports nothing of Fleet
(agents' processes import it quickly)."""

import re
from collections.abc import Collection, Iterable, Sequence

# Read from the environment of the CLI, the web and the workers (system/settings.py, system/git.py); never passed to
# an agent or a test run, even when a repository or a ticket names them. The database's and the broker's URLs carry
# their passwords (docker-compose.yml writes them so): with the broker's, code could queue the workers' tasks.
CREDENTIAL_VARIABLES = frozenset(
    {"FLEET_GIT_TOKEN", "FLEET_GITHUB_TOKEN", "FLEET_WEBHOOK_SECRET", "FLEET_DATABASE_URL", "FLEET_BROKER_URL"}
)
# Names whose values are secrets: Fleet's own settings, keys (a model provider's, which the gateway holds: OPENAI_,
# ANTHROPIC_, GEMINI_, GOOGLE_API_KEY), tokens (GITHUB_TOKEN), passwords, DSNs, sessions, the clouds' variables. No
# setup command gets one (verification/runner.py scrubbed_env); a repository's `.fleet.toml`, written by whoever
# commits to it, passes none on to tests or agents: only the operator does, by name (orchestrator/repos.py), and the
# workers leave out any other a repository's stored settings hold (`withheld`: verification/runner.py, agents/base.py).
SECRET_NAME = re.compile(
    r"^FLEET_(?!PORT_)|TOKEN|SECRET|PASSW|(?:^|_)PASS(?:_|$)|KEY(?:_|S?$)|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIAL|AUTH|COOKIE|SESSION|DSN|(?:^|_)SK(?:_|$)|DATABASE_URL|BROKER_URL|REDIS_URL|^AWS_|"
    r"^GOOGLE_APPLICATION|^AZURE_",
    re.IGNORECASE,
)

# A URL's password or token in any text: `scheme://user:PASSWORD@`, the password up to the last `@` of the host part.
_URL_PASSWORD = re.compile(r"(?P<lead>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*):[^\s/?#]*@")


def shown_url(text: str) -> str:
    """text (a URL, or an error or a line naming URLs) with every URL's password or token shown as ***: a database's
    or a broker's URL, a repository's remote that an older Fleet stored with one, git's own words about it."""
    return _URL_PASSWORD.sub(r"\g<lead>:***@", text)


def withheld(names: Iterable[str], granted: Collection[str]) -> list[str]:
    """The names shaped like a secret's that were not passed on by name by whoever may (the operator for a
    repository's settings, the submitter for a ticket's): never passed on, whatever stored them."""
    return [name for name in names if SECRET_NAME.search(name) and name not in granted]


def passable(names: Iterable[str], granted: Collection[str]) -> list[str]:
    """names less those withheld."""
    return [name for name in names if not SECRET_NAME.search(name) or name in granted]


def withheld_line(setting: str, names: Sequence[str]) -> str:
    """What a worker says of the names it withheld: the repository's setting named them and no operator did."""
    option = "--" + setting.replace("_", "-")
    return (
        f"{setting} names {', '.join(names)}, shaped like a secret, which no operator passed on: not passed on "
        f"(`fleet repo update REPO {option} NAME` with each of its names passes it)"
    )
