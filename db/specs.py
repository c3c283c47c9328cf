"""One typed spec per noun a person enters: each field's type, bound, default and help text, declared once.

The CLI options, the API models (and so the OpenAPI page), `.fleet.toml`, `submit --file` and the worker's job
all read these fields; `explain` gives the one line every entry point shows for a value out of bounds.
This module imports nothing from Fleet, so any layer may use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from db.spectypes import (
    GRANTED,
    LIMITS_FROM_FILE,
    MAX_BODY,
    MAX_MEMORY_MB,
    MAX_PORTS,
    MAX_PRIORITY,
    MAX_PROCESSES,
    MAX_SECONDS,
    MAX_TITLE,
    MAX_USD,
    PATTERN_NAMES,
    STORED,
    TOKEN_NAME,
    AgentName,
    Arg,
    Branch,
    Command,
    CredentialFreeUrl,
    ForgeRepo,
    Glob,
    HostPort,
    Label,
    Login,
    ModelName,
    ModelPrice,
    PathText,
    SetupNetwork,
    Url,
    Variable,
    holding_nul,
    meant_field,
    plural_names,
    shown_value,
)


class Spec(BaseModel):
    """Unknown keys are errors; values are not coerced across types (`"3"` is not a number, `true` not 1).

    The command line's repeatable options are singular (`--agent a --agent b`); a file or an API body may use
    those names too (`SINGULAR`), with one value or a list."""

    model_config = ConfigDict(extra="forbid", strict=True)
    SINGULAR: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _singular_names(cls, data: Any) -> Any:
        return plural_names(data, cls.SINGULAR) if isinstance(data, Mapping) and cls.SINGULAR else data

    @model_validator(mode="after")
    def _no_nul(self) -> Spec:
        if name := holding_nul(dict(self)):
            raise ValueError(f"{name}: holds a NUL character, which no text Fleet keeps may hold")
        return self


REPEATABLE_SETTINGS = (
    "copy_files", "env_key_files", "agent_args", "agent_hosts", "setup_hosts", "read_paths", "known_failures",
    "model_prices", "pr_labels", "feedback_users",
)  # fmt: skip


class RepoSettings(Spec):
    """Every setting of a repository: the options of `fleet repo add`, the keys of `.fleet.toml`, the API's fields."""

    SINGULAR: ClassVar[dict[str, str]] = {name.removesuffix("s"): name for name in REPEATABLE_SETTINGS}

    test_cmd: Command = Field(default="", description="The command that runs the repository's tests.")
    setup_cmd: Command = Field(default="", description="Run before the agent and before the tests.")
    agent: AgentName = Field(default="shell", description="The default agent for this repo's tickets.")
    protect: list[Glob] = Field(
        default_factory=list, max_length=200, description="A path glob agents may not change (repeatable)."
    )
    hidden_tests: PathText = Field(default="", description="A folder of tests the agent never sees.")
    allow_test_edits: bool = Field(default=False, description="Tickets may add tests.")
    test_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Seconds the tests may take (default: FLEET_TEST_TIMEOUT_SECONDS).",
    )
    copy_files: list[Glob] = Field(
        default_factory=list,
        max_length=200,
        description="SRC:DEST, a file copied into every checkout, never diffed (repeatable).",
    )
    max_concurrency: int = Field(
        default=0, ge=0, le=10_000, description="At most this many attempts of this repo at once."
    )
    daily_budget_usd: float = Field(
        default=0.0, ge=0, le=MAX_USD, description="No new attempt once today's spend reaches this."
    )
    test_network: bool = Field(default=False, description="Sandboxed test runs may use the network.")
    setup_network: SetupNetwork = Field(
        default="proxy", description="The setup's network: proxy (to setup_hosts only), host or none."
    )
    setup_hosts: list[HostPort] = Field(
        default_factory=list,
        max_length=100,
        description="host:port the setup may reach besides FLEET_SETUP_HOSTS (repeatable).",
    )
    env_cache: bool = Field(default=True, description="Reuse what the setup command built while its key files match.")
    env_key_files: list[Glob] = Field(
        default_factory=list,
        max_length=200,
        description="A glob of the files that define the environment (repeatable).",
    )
    ports: int = Field(
        default=0, ge=0, le=MAX_PORTS, description="Ports each attempt needs (default: FLEET_PORT_BLOCK_SIZE)."
    )
    agent_sandbox: bool = Field(default=True, description="Run agents in bubblewrap.")
    agent_network: Literal["", "none", "on"] = Field(
        default="", description="none or on: may sandboxed agents use the network."
    )
    agent_model: ModelName = Field(
        default="", description="The model this repo's agents use unless a ticket names one."
    )
    agent_args: list[Arg] = Field(
        default_factory=list, max_length=100, description="An argument every agent gets (repeatable)."
    )
    agent_env: list[Variable] = Field(
        default_factory=list, max_length=100, description="A variable name passed through to every agent (repeatable)."
    )
    agent_memory_mb: int = Field(
        default=0, ge=0, le=MAX_MEMORY_MB, description="Memory limit of each agent attempt (0: the worker's)."
    )
    agent_max_processes: int = Field(
        default=0, ge=0, le=MAX_PROCESSES, description="Processes and threads an agent attempt may run (0: worker's)."
    )
    agent_address_space_mb: int = Field(
        default=0,
        ge=0,
        le=MAX_MEMORY_MB,
        description="Address space of each agent process (0: the agent's own default, else the worker's).",
    )
    agent_hosts: list[HostPort] = Field(
        default_factory=list,
        max_length=100,
        description="host:port sandboxed agents may reach besides their model API (repeatable).",
    )
    model_prices: list[ModelPrice] = Field(
        default_factory=list,
        max_length=200,
        description="MODEL=INPUT/OUTPUT or MODEL=INPUT/OUTPUT/CACHED, USD per million tokens (repeatable).",
    )
    test_env: list[Variable] = Field(
        default_factory=list, max_length=100, description="A variable name passed through to the tests (repeatable)."
    )
    read_paths: list[PathText] = Field(
        default_factory=list,
        max_length=100,
        description="A path every sandbox of this repo shows read-only (repeatable).",
    )
    known_failures: list[Arg] = Field(
        default_factory=list,
        max_length=500,
        description="A test id known to fail, never a target unless named or every failure is known (repeatable).",
    )
    context_limit: int = Field(
        default=24_000, ge=2_000, le=1_000_000, description="Bytes of the prompt (the context pack) an agent gets."
    )
    merge_slots: int = Field(
        default=4, ge=1, le=100, description="Merge queue entries verified at once, speculatively (1: one at a time)."
    )
    merge_conflict_aware: bool = Field(
        default=True,
        description="The merge queue builds independent entries first and never stacks overlapping ones.",
    )
    agent_instructions: PathText = Field(
        default="", description="The repository's file of instructions for agents (default: AGENTS.md, CLAUDE.md)."
    )
    deliver: Literal["branch", "push", "pr", "merge"] = Field(
        default="branch", description="What approve does: branch (local), push, pr (push and open a PR) or merge."
    )
    target_branch: Branch = Field(
        default="", description="The branch PRs and merges target (default: the remote's HEAD)."
    )
    remote: CredentialFreeUrl = Field(
        default="", description="Where push and pr deliver (default: the repo's URL, or its origin)."
    )
    forge_url: CredentialFreeUrl = Field(
        default="", description="The forge's API (default https://api.github.com; GHES: .../api/v3)."
    )
    forge_repo: ForgeRepo = Field(default="", description="OWNER/NAME on the forge (default: from the remote's URL).")
    pr_labels: list[Label] = Field(
        default_factory=list, max_length=20, description="A label every PR gets (repeatable)."
    )
    pr_draft: bool = Field(default=False, description="Open pull requests as drafts.")
    feedback_users: list[Login] = Field(
        default_factory=list,
        max_length=200,
        description="A forge user whose /fleet comments go to the agent (repeatable).",
    )
    import_label: Label = Field(default="", description="Keep importing open issues with this label as tickets.")
    notify_url: Url = Field(default="", description="A webhook told of needs_review, failed, error, merged, ejected.")
    notify_format: Literal["json", "slack"] = Field(default="json", description="json, or slack (incoming webhook).")
    export: bool = Field(default=True, description="fleet export may include this repo's attempts (training data).")

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> RepoSettings:
        """The settings as the database holds them (copy_files as [source, dest] pairs)."""
        beside = (GRANTED, LIMITS_FROM_FILE)  # beside the settings, not ones
        data = {key: value for key, value in stored.items() if key not in beside}
        data["copy_files"] = [pair if isinstance(pair, str) else ":".join(pair) for pair in data.get("copy_files", [])]
        return cls.model_validate(data, strict=False, context={STORED: True})  # older versions: read leniently

    def stored(self) -> dict[str, Any]:
        """What the database's settings column holds: the values that differ from the defaults, minus the columns."""
        data = self.model_dump(exclude_defaults=True, exclude=set(REPO_COLUMNS))
        if self.copy_files:
            data["copy_files"] = [list(copy_pair(item)) for item in self.copy_files]
        return data

    def given(self) -> dict[str, Any]:
        """Only the values that were given (the rest fall back to `.fleet.toml`, then to the defaults)."""
        return self.model_dump(include=self.model_fields_set & set(RepoSettings.model_fields))


REPO_COLUMNS = ("test_cmd", "setup_cmd", "agent")


def copy_pair(item: str) -> tuple[str, str]:
    """`SRC:DEST` split at its last colon; DEST may hold no colon, SRC may."""
    source, _, dest = item.rpartition(":")
    return source, dest


class RepoSpec(RepoSettings):
    """A repository to register: its name, where it lives (a folder or a URL), and its settings."""

    name: str = Field(min_length=1, max_length=100, description="The repo's name in tickets and commands.")
    path: PathText = Field(
        min_length=1,
        description=(
            "The repository's folder on this machine, or its URL (git://, https://, ssh://, file://): "
            "a team whose workers run on other machines registers it by URL."
        ),
    )


class TicketSpec(Spec):
    """What a person asks for: the same fields on the command line, in a --file list and in the API.

    `agent`, `target` and `agent_arg` (the options' names, one value or a list) are accepted for `agents`,
    `targets` and `agent_args`."""

    SINGULAR: ClassVar[dict[str, str]] = {"agent": "agents", "target": "targets", "agent_arg": "agent_args"}

    repo: str = Field(min_length=1, max_length=100, description="The registered repo name.")
    title: str = Field(min_length=1, max_length=MAX_TITLE, description="What to do, in one line.")
    body: str = Field(default="", max_length=MAX_BODY, description="The details.")
    base: str = Field(default="HEAD", min_length=1, max_length=200, description="The base ref or commit.")
    agents: list[AgentName] = Field(
        default_factory=list, max_length=16, description="Agent name (repeatable: one run per agent)."
    )
    agent_cmd: Command = Field(default="", description="The command the shell agent runs (no shell).")
    attempts: int = Field(default=3, ge=1, le=50, description="Attempts per run, feedback between them.")
    fanout: int = Field(default=1, ge=1, le=32, description="Independent runs per agent.")
    targets: list[Glob] = Field(
        default_factory=list, max_length=200, description="A test id that must pass (repeatable)."
    )
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first.")
    timeout: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="Agent time limit in seconds per attempt."
    )
    until: Literal["first", "all"] = Field(
        default="all", description="With several runs: 'first' stops the others at the first pass."
    )
    model: ModelName = Field(default="", description="The model the agent should use.")
    agent_args: list[Arg] = Field(
        default_factory=list, max_length=100, description="An extra argument for the agent (repeatable)."
    )
    agent_env: list[Variable] = Field(
        default_factory=list, max_length=100, description="An environment variable the agent may see (repeatable)."
    )
    budget_usd: float = Field(
        default=0.0, ge=0, le=MAX_USD, description="No new attempt once the ticket has cost this much (0: no limit)."
    )
    area: list[Glob] = Field(
        default_factory=list,
        max_length=200,
        description="A glob of the paths this ticket is about; others are flagged (repeatable).",
    )


class TokenSpec(Spec):
    """An API token to create."""

    role: Literal["viewer", "submitter", "reviewer", "admin"] = Field(
        description="viewer, submitter, reviewer or admin."
    )
    name: str = Field(
        default="",
        pattern=TOKEN_NAME,
        description="A unique name; recorded as the actor of what the token does.",
    )


M = TypeVar("M", bound=BaseModel)
LOCATIONS = ("body", "query", "path", "header", "cookie")


def help_text(model: type[BaseModel], name: str) -> str:
    """A field's description and its numeric bounds, for `--help` and the README."""
    info = model.model_fields[name]
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    limits = [
        f"{word} {_number(getattr(bound, key))}"
        for bound in info.metadata
        for key, word in words.items()
        if hasattr(bound, key)
    ]
    return " ".join([info.description or "", f"({', '.join(limits)})" if limits else ""]).strip()


class SpecError(ValueError):
    """A value out of its field's type or bounds; the message is `explain`'s one line."""


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """data as a model, or SpecError carrying `explain`'s one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(explain(exc) + meant_field(exc, model)) from None


def explain(error: ValidationError) -> str:
    """The first problem on one line, naming the field and the bound: `attempts: must be at most 50 (got 99)`."""
    return explain_errors(error.errors())


def explain_errors(errors: Sequence[Any]) -> str:
    """`explain` for the error dicts FastAPI's RequestValidationError carries."""
    if not errors:
        return "invalid input"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in LOCATIONS]
    field = ".".join(loc)
    problem = _problem(first.get("type", ""), dict(first.get("ctx") or {}), first.get("msg", ""))
    quiet = first.get("type") in ("missing", "extra_forbidden") or isinstance(first.get("input"), Mapping)
    got = "" if quiet else f" (got {shown_value(first.get('input'))})"
    line = f"{field}: {problem}{got}" if field else f"{problem}{got}"
    return " ".join(line.split())


def _problem(kind: str, ctx: dict[str, Any], msg: str) -> str:
    items = "items" if kind == "too_long" else "characters"
    messages = {
        "less_than_equal": f"must be at most {_number(ctx.get('le'))}",
        "less_than": f"must be less than {_number(ctx.get('lt'))}",
        "greater_than_equal": f"must be at least {_number(ctx.get('ge'))}",
        "greater_than": f"must be more than {_number(ctx.get('gt'))}",
        "too_long": f"must have at most {ctx.get('max_length')} {items}",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "string_too_short": "must not be empty" if ctx.get("min_length") == 1 else "is too short",
        "string_pattern_mismatch": f"is not {PATTERN_NAMES.get(str(ctx.get('pattern')), 'in the expected form')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "enum": f"must be one of {ctx.get('expected')}",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "list_type": "must be a list",
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "model_type": "must be a mapping of fields",
        "model_attributes_type": "must be a mapping of fields",
        "dict_type": "must be a mapping of fields",
    }
    return messages.get(kind, msg.removeprefix("Value error, "))


def _number(value: Any) -> Any:
    """1000000.0 as 1000000: a bound reads as typed."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
