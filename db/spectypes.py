"""The value types of the specs (db/specs.py): each a string with its bound or pattern, and the pattern's name in
the one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from difflib import get_close_matches
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError, ValidationInfo

from system.hostport import HOST_PORT, HOST_PORT_EXAMPLE
from system.mirror import password_in

VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]{0,199}$"
MODEL_PRICE = r"^[^=\s]{1,200}=\d{1,7}(\.\d{1,9})?/\d{1,7}(\.\d{1,9})?(/\d{1,7}(\.\d{1,9})?)?$"
TOKEN_NAME = r"^$|^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"
BRANCH = r"^$|^[A-Za-z0-9_][A-Za-z0-9._/-]*$"  # no leading dash: never read as an option
FORGE_REPO = r"^$|^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
LOGIN = r"^[A-Za-z0-9][A-Za-z0-9-]*(?:\[bot\])?$"
# An agent's command line gets `--model NAME`: a name starting with '-' would be read as an option of the agent's
# own (gemini's `--model --yolo` turns off its approval of commands), which only an admin's agent_args may give.
MODEL = r"^$|^[^-]"
PATTERN_NAMES = {
    VARIABLE: "a variable name",
    MODEL_PRICE: "MODEL=INPUT/OUTPUT[/CACHED] in USD per million tokens (gpt-4o=2.5/10/1.25)",
    HOST_PORT: HOST_PORT_EXAMPLE,
    TOKEN_NAME: "1-100 letters, digits, and _ . @ - (starting with a letter or digit)",
    BRANCH: "a branch name",
    FORGE_REPO: "OWNER/NAME",
    LOGIN: "a forge user name",
    MODEL: "a model name (one never starts with '-')",
}
STORED = "stored"  # the validation context of settings read back from the database
# Stored beside a repository's settings, by setting (test_env, agent_env): the names shaped like a secret's that an
# operator passed on itself (`fleet repo add/update`, the API); a name a `.fleet.toml` wrote is never among them.
GRANTED = "granted"
LIMITS_FROM_FILE = "limits_from_file"  # the agent limits a `.fleet.toml` set: they only ever lower the worker's
MAX_TITLE = 500
MAX_BODY = 200_000
MAX_PORTS = 10_000
MAX_USD = 1_000_000.0
MAX_SECONDS = 86_400.0
MAX_PRIORITY = 1_000_000  # far inside the 32-bit integer both SQLite and PostgreSQL store
MAX_MEMORY_MB = 1_048_576  # 1 TiB
MAX_PROCESSES = 4_194_304  # the kernel's pid_max ceiling

Command = Annotated[str, StringConstraints(max_length=4000)]
Glob = Annotated[str, StringConstraints(max_length=500)]
PathText = Annotated[str, StringConstraints(max_length=4000)]
Arg = Annotated[str, StringConstraints(max_length=1000)]
Variable = Annotated[str, StringConstraints(pattern=VARIABLE)]
HostPort = Annotated[str, StringConstraints(max_length=300, pattern=HOST_PORT)]
ModelPrice = Annotated[str, StringConstraints(max_length=300, pattern=MODEL_PRICE)]
AgentName = Annotated[str, StringConstraints(max_length=200)]
ModelName = Annotated[str, StringConstraints(max_length=200, pattern=MODEL)]
Branch = Annotated[str, StringConstraints(max_length=200, pattern=BRANCH)]
Url = Annotated[str, StringConstraints(max_length=2000)]


def _no_password(url: str, info: ValidationInfo) -> str:
    if password_in(url) and not (info.context or {}).get(STORED):  # what an older version stored is read still
        raise ValueError("a URL may not carry a password or token: set FLEET_GIT_TOKEN or use a credential helper")
    return url


# Where Fleet pushes or calls with its own credentials: a token in the URL would be stored, listed and echoed.
CredentialFreeUrl = Annotated[Url, AfterValidator(_no_password)]
ForgeRepo = Annotated[str, StringConstraints(max_length=200, pattern=FORGE_REPO)]
Label = Annotated[str, StringConstraints(max_length=100)]
# A setup command's network: the egress proxy to its setup hosts, the host's own, or none.
SetupNetwork = Literal["proxy", "host", "none"]
Login = Annotated[str, StringConstraints(max_length=100, pattern=LOGIN)]


def meant_field(error: ValidationError, model: type[BaseModel]) -> str:
    """` (did you mean 'attempts'?)` for an unknown top-level field close to one of model's names, else ""."""
    first = next(iter(error.errors()), None)
    if first is None or first["type"] != "extra_forbidden" or len(first["loc"]) != 1:
        return ""
    close = get_close_matches(str(first["loc"][0]), [*model.model_fields, *getattr(model, "SINGULAR", {})], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plural_names(data: Mapping[str, Any], singular: Mapping[str, str]) -> dict[str, Any]:
    """Fields with the options' singular names (one value or a list) under the spec's plural ones."""
    merged = dict(data)
    for one, many in singular.items():
        if one in merged:
            if many in merged:
                raise ValueError(f"give {one} or {many}, not both")
            value = merged.pop(one)
            merged[many] = [value] if isinstance(value, str) else value
    return merged


def holding_nul(fields: Mapping[str, Any]) -> str:
    """The first field whose text (or one of its texts) holds a NUL, else "": PostgreSQL's text holds none, so a
    name or a test id with one was a server error rather than a line."""
    for name, value in fields.items():
        if any(isinstance(text, str) and "\x00" in text for text in (value if isinstance(value, list) else [value])):
            return name
    return ""


def shown_value(value: Any) -> str:
    """A refused value as an error line quotes it: a collection by its size, a long text cut, a password never."""
    if isinstance(value, list | tuple | dict):
        return f"{len(value)} items"
    if isinstance(value, str) and password_in(value):
        return "a URL with a password"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def limits_from_file(stored: Mapping[str, Any]) -> tuple[str, ...]:
    """The agent limits a repository's settings took from its `.fleet.toml`, not from the operator (none if older)."""
    names = stored.get(LIMITS_FROM_FILE)
    return tuple(map(str, names)) if isinstance(names, list) else ()


def granted_names(stored: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The names an operator passed on itself, by setting, as a repository's settings store them (none if older)."""
    granted = stored.get(GRANTED)
    if not isinstance(granted, Mapping):
        return {}
    return {str(setting): tuple(map(str, names)) for setting, names in granted.items() if isinstance(names, list)}
