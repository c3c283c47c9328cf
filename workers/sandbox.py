"""The bubblewrap sandbox every agent command runs in, when bwrap is installed and the repository allows it.

Inside, an agent sees the host read-only, with these exceptions:
- writable: the worktree, its attempt folder (prompt, the CLI's scratch files, TMPDIR) and a home folder
  of its own in the attempt folder (HOME and XDG_CACHE_HOME point there; API keys come through the
  environment allow-list). It goes with the attempt folder, so nothing an agent leaves in its home, such
  as a ~/.gitconfig or a shell profile, reaches a later attempt;
- the worktree's `.git` is a read-only file naming the attempt's own git dir (workers/agent_git.py), which
  holds the base commit and nothing after or beside it; the agent may commit there;
- hidden (an empty read-only folder): FLEET_HOME, with the mirrors, other slots, other attempts and the
  SQLite database, the registered repository itself, which holds every branch, and the worker user's
  credential stores (~/.ssh, ~/.aws, ~/.netrc... : CREDENTIAL_STORES; a hidden file reads as empty);
- its own PID namespace (the whole tree dies with the agent, nothing is left behind) and, with network
  `none`, its own network namespace: only a private loopback, so not even the worker's loopback servers.

Network: the built-in `llm` agent and the `shell` agent default to `none` (the llm agent calls its model from
the worker, outside the sandbox; only its shell commands run inside). The agent CLIs call their model API
themselves and default to `on`. A repository (`agent_network`) or FLEET_AGENT_NETWORK chooses for all.
The per-attempt cost is one `git pack-objects` plus a few small files, and bwrap's start per command
(bench/agent_sandbox.py measures both).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from verification.sandbox import sandbox_problem
from workers.agent_git import gitdir_pointer, make_agent_gitdir
from workers.worktree import remove_tree

NETWORK_CHOICES = ("none", "on")
AUTO = "auto"
MISSING = "the agent ran without a sandbox (bubblewrap is not installed)"
BROKEN = "the agent ran without a sandbox (bubblewrap cannot create one here: {})"
TURNED_OFF = "the agent ran without a sandbox (turned off by {})"


# The worker user's credential stores: an agent gets its keys from the environment allow-list, never from these.
CREDENTIAL_STORES = (
    ".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".gnupg",
    ".netrc", ".git-credentials", ".pgpass", ".pypirc", ".npmrc",
)  # fmt: skip


def credential_stores(home: Path) -> tuple[Path, ...]:
    """The credential stores present in home (the worker user's), for SandboxPlan.hidden."""
    return tuple(home / name for name in CREDENTIAL_STORES if (home / name).exists())


@dataclass(frozen=True)
class AgentSandbox:
    """How to run one attempt's agent commands: the argv prefix, and the variables that move HOME and TMPDIR."""

    wrapper: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxPlan:
    """The paths one attempt's sandbox is built from."""

    worktree: Path
    worktree_gitdir: Path
    mirror: Path
    base_sha: str
    attempt_dir: Path
    home: Path
    hidden: tuple[Path, ...]
    network: bool
    # Files shown read-only even inside a hidden folder: the agent's own program (`--agent-cmd ./fix.sh` run
    # from the repository's folder).
    shown: tuple[Path, ...] = ()

    @property
    def scratch(self) -> Path:
        """The agent's writable corner of the attempt folder: its prompt, its CLI's files, its TMPDIR."""
        return self.attempt_dir / "agent"


def bwrap_missing() -> str | None:
    """Why no agent sandbox can start on this machine (as the attempt's warning), or None when it can."""
    exe = shutil.which("bwrap")
    if exe is None:
        return MISSING
    problem = sandbox_problem(exe)
    return BROKEN.format(problem) if problem is not None else None


def wants_network(setting: str, repo_choice: str | None, agent_needs_network: bool) -> bool:
    """The repository's choice, else FLEET_AGENT_NETWORK, else (auto) what the agent needs."""
    choice = repo_choice or setting
    return agent_needs_network if choice == AUTO else choice == "on"


def build_sandbox(plan: SandboxPlan) -> AgentSandbox:
    """Make the attempt's git dir and folders, and the bwrap argv prefix that confines the agent to them."""
    exe = shutil.which("bwrap")
    if exe is None:
        raise FileNotFoundError("bwrap")
    tmp = plan.scratch / "tmp"
    for folder in (tmp, plan.home / ".cache"):
        folder.mkdir(parents=True, exist_ok=True)
    remove_tree(plan.attempt_dir / "agent-git")  # left by an earlier delivery of the same attempt
    gitdir = make_agent_gitdir(plan.mirror, plan.worktree_gitdir, plan.base_sha, plan.attempt_dir / "agent-git")
    pointer = gitdir_pointer(gitdir, plan.attempt_dir / "agent-git-pointer")
    wrapper = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = _outermost(plan.hidden)
    for path in hidden:
        wrapper += ["--tmpfs", str(path)]
    for path in (p.resolve() for p in plan.hidden if p.is_file()):
        if not any(path.is_relative_to(folder) for folder in hidden):
            wrapper += ["--ro-bind", "/dev/null", str(path)]  # a hidden file reads as empty
    for path in (plan.worktree, gitdir, plan.scratch, plan.home):
        wrapper += ["--bind", str(path), str(path)]
    wrapper += ["--ro-bind", str(pointer), str(plan.worktree / ".git")]
    for path in (p.resolve() for p in plan.shown if p.is_file()):
        wrapper += ["--ro-bind", str(path), str(path)]
    for path in hidden:
        wrapper += ["--remount-ro", str(path)]
    wrapper += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(plan.worktree)]
    if not plan.network:
        wrapper.append("--unshare-net")
    env = {"HOME": str(plan.home), "XDG_CACHE_HOME": str(plan.home / ".cache"), "TMPDIR": str(tmp)}
    return AgentSandbox(tuple(wrapper), env)


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """Existing folders, without those inside another one: covering the outer folder hides them already."""
    folders = sorted({p.resolve() for p in paths if p.is_dir()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in folders:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept
