"""The one settings object, built at the entry points (CLI, worker, web) and passed down."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from system.hostport import HOST_PORT, HOST_PORT_EXAMPLE
from system.places import EMBEDDED_BROKER, Place, default_home, resolved
from system.rlimits import DEFAULT_FILE_SIZE
from system.tmpfs import DEFAULT_TMPFS
from system.webhosts import host_patterns

__all__ = ["EMBEDDED_BROKER", "Settings", "default_home"]
VERIFY_PER_CORE = 4
REFILLS_PER_CORE = 4
# Where a setup command may download from by default (FLEET_SETUP_HOSTS replaces the list, a repository's
# setup_hosts adds to it): the public package indexes whose clients honour the proxy variables (Python, Node, Rust's
# sparse index, Go, Ruby). Java's tools do not; a repository names its own hosts and tells them the proxy.
PACKAGE_INDEXES = (
    "pypi.org:443", "files.pythonhosted.org:443", "registry.npmjs.org:443", "registry.yarnpkg.com:443",
    "index.crates.io:443", "static.crates.io:443", "proxy.golang.org:443", "sum.golang.org:443",
    "rubygems.org:443", "index.rubygems.org:443",
)  # fmt: skip


T = TypeVar("T")
Listed = Annotated[list[T], NoDecode]  # taken apart by Settings._listed, not by pydantic-settings' JSON decoding
LISTS = ("agent_classes", "agent_hosts", "setup_hosts", "sandbox_read_paths", "model_prices", "web_hosts")


class Settings(BaseSettings):
    """Fleet's configuration; every field can be set as FLEET_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str = ""
    broker_url: str = EMBEDDED_BROKER

    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    redispatch_seconds: float = 120.0
    reconcile_seconds: float = 15.0
    # A waiting attempt sent this long ago and taken by nobody while workers have free slots lost its message
    # (a broker restart): it is sent again then, not after redispatch_seconds.
    resend_idle_seconds: float = 10.0
    # How long a result write retries a database or broker that does not answer (backoff with jitter) before the
    # attempt goes back in line, its finished outcome kept in the worker's outcome journal.
    write_retry_seconds: float = 30.0
    # After SIGTERM a worker takes no new work and lets running attempts finish this long, then hands them back.
    shutdown_grace_seconds: float = 300.0
    # How long `fleet up --until-idle` and `fleet worker --drain` wait for a team broker that never answers (a
    # mistyped FLEET_BROKER_URL) before they give up, the tickets left queued; without them a worker waits on.
    broker_wait_seconds: float = 60.0

    agent_timeout_seconds: float = 3600.0
    test_timeout_seconds: float = 1800.0
    setup_timeout_seconds: float = 1800.0
    kill_grace_seconds: float = 5.0

    max_concurrency: int = 0
    agent_limits: dict[str, int] = {}
    # The agent classes (`pkg.mod:Class`) tickets may name besides the built-in agents: chosen by the admin who runs
    # the workers, never by a submitter; each runs in its own process in the agent sandbox (workers/agents/hosted.py).
    agent_classes: Listed[str] = []

    # The agent sandbox (system/sandbox.py) and the per-attempt cgroup limits (workers/cgroups.py; 0: none).
    agent_sandbox: bool = True
    agent_network: Literal["auto", "none", "on"] = "auto"
    agent_hosts: Listed[str] = []  # host:port every sandboxed agent with the network may reach (workers/egress.py)
    # host:port a setup command may reach through the egress proxy (workers/pipeline/setup_network.py)
    setup_hosts: Listed[str] = list(PACKAGE_INDEXES)
    sandbox_read_paths: Listed[Path] = []  # shown read-only in every sandbox, besides the toolchains found on PATH
    # The metering model gateway (workers/gateway/): where each API family's calls go on to (empty: the worker's
    # OPENAI_BASE_URL and the like, else the provider), and price overrides (MODEL=INPUT/OUTPUT[/CACHED], USD per
    # million tokens) over its defaults. The real keys come from the worker's OPENAI_API_KEY, ANTHROPIC_API_KEY and
    # GEMINI_API_KEY (or GOOGLE_API_KEY); agents only get placeholders.
    gateway_openai_url: str = ""
    gateway_anthropic_url: str = ""
    gateway_gemini_url: str = ""
    model_prices: Listed[str] = []
    agent_max_processes: int = 1024
    agent_memory_mb: int = 4096
    # RLIMIT_AS of every agent process, unless its adapter or its repository says otherwise (0: none).
    agent_address_space_mb: int = 16384
    # RLIMIT_FSIZE, soft and hard, of every agent, setup and test process: the largest file they may write (0: none).
    max_file_mb: int = Field(default=DEFAULT_FILE_SIZE // 2**20, ge=0)
    # What each sandbox's /tmp, and its /dev/shm, may hold: tmpfs, memory no address-space limit counts.
    sandbox_tmp_mb: int = Field(default=DEFAULT_TMPFS // 2**20, ge=1)

    # Worktrees per repository and kind of work, for the host's worker processes together (they share the pools);
    # 0: as many as they lease at once, which their slots bound.
    worktree_pool_size: int = Field(default=0, ge=0)
    # Verifications a worker runs at once, beside its agent slots (they never hold one): sized to the cores
    # (0: four per core; a verification spends much of its time waiting on git and sandbox starts).
    verify_concurrency: int = Field(default=0, ge=0)
    # Slots that do their between-agents work at once (workers/refills.py): the diff, the clean-up, the end and the
    # next agent's start, when many agents end together (0: four per core).
    refill_concurrency: int = Field(default=0, ge=0)
    env_cache_bytes: int = 10 * 2**30  # environments built by setup commands, kept for reuse; 0 turns it off
    ports_dir: Path = Path(tempfile.gettempdir()) / f"fleet-ports-{os.getuid()}"
    port_first: int = 20_000
    port_block_size: int = 20
    port_blocks: int = 1_000
    transcript_limit_bytes: int = 256_000
    # How often a running agent's output so far is stored on its attempt (fleet logs and the web show it live).
    transcript_flush_seconds: float = 1.0
    max_diff_bytes: int = 5 * 2**20  # a larger diff ends its attempt as an error; nothing of it is stored
    feedback_limit_bytes: int = 4_000

    # Delivery and the forge (orchestrator/delivery.py). The tokens are read here and handed only to git's credential
    # helper (system/gitauth.py) and the forge client: never to an agent, a test run, a transcript or a log.
    git_token: SecretStr = SecretStr("")  # FLEET_GIT_TOKEN: the password git pushes and fetches over HTTPS with
    git_user: str = "x-access-token"
    github_token: SecretStr = SecretStr("")  # FLEET_GITHUB_TOKEN: the forge's API (default: the git token)
    webhook_secret: SecretStr = SecretStr("")  # FLEET_WEBHOOK_SECRET: the HMAC key of /api/hooks/github
    public_url: str = ""  # where the web pages are served, for the links in PRs and notifications
    forge_poll_seconds: float = 60.0  # how often the reconciler reads open PRs and imports issues
    # The names `fleet web` answers to besides localhost, 127.0.0.1, [::1] and the address it listens on: a request
    # with another Host header is refused (DNS rebinding). Comma-separated; `*.domain`; `*` for any name, behind a
    # proxy that checks Host itself. Listening on every interface (0.0.0.0) needs it.
    web_hosts: Listed[str] = []

    @field_validator(*LISTS, mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        """A list from the environment: a JSON array (`["a", "b"]`) or comma-separated names (`a,b`)."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError as exc:  # the usual one line, naming the variable
                raise ValueError(f"not a JSON list ({exc}); or give the items comma-separated") from None
        return [item.strip() for item in value.split(",") if item.strip()]

    @field_validator("agent_hosts", "setup_hosts")
    @classmethod
    def _host_ports(cls, names: list[str]) -> list[str]:
        """What a sandbox may reach, checked here as a repository's own list is: else an attempt fails on it."""
        for name in names:
            if not re.match(HOST_PORT, name):
                raise ValueError(f"{name!r} is not {HOST_PORT_EXAMPLE}")
        return names

    @field_validator("sandbox_read_paths")
    @classmethod
    def _absolute(cls, paths: list[Path]) -> list[Path]:
        """Shown in every sandbox: a relative path would be read from wherever the worker was started."""
        for path in paths:
            if not path.is_absolute():
                raise ValueError(f"{str(path)!r} is not an absolute path (give paths holding a comma as a JSON array)")
        return paths

    @field_validator("web_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        """Each name checked and put in the form a Host header has."""
        return host_patterns(names)

    @property
    def place(self) -> Place:
        """Where the state is: what the reading commands take from the environment without building Settings."""
        return Place(self.home, self.database_url, self.broker_url)

    def where(self) -> str:
        """Where this Fleet keeps its state, and why there: for the commands that found nothing."""
        return self.place.where()

    @property
    def db_url(self) -> str:
        """The database URL: FLEET_DATABASE_URL, or SQLite inside FLEET_HOME."""
        return self.place.db_url

    @property
    def verify_slots(self) -> int:
        """How many verifications a worker runs at once: FLEET_VERIFY_CONCURRENCY, else four per core."""
        return self.verify_concurrency or VERIFY_PER_CORE * (os.cpu_count() or 1)

    @property
    def refill_turns(self) -> int:
        """How many slots of a worker refill at once: FLEET_REFILL_CONCURRENCY, else four per core."""
        return self.refill_concurrency or REFILLS_PER_CORE * (os.cpu_count() or 1)

    @property
    def embedded(self) -> bool:
        """True when the broker is the serverless one under FLEET_HOME."""
        return self.place.embedded

    @property
    def broker_dir(self) -> Path:
        return self.place.broker_dir

    @property
    def worktrees_dir(self) -> Path:
        return resolved(self.home) / "worktrees"

    @property
    def mirrors_dir(self) -> Path:
        return resolved(self.home) / "mirrors"

    @property
    def env_cache_dir(self) -> Path:
        return resolved(self.home) / "envs"

    @property
    def attempts_dir(self) -> Path:
        return resolved(self.home) / "attempts"
