"""One confinement for every command Fleet runs on someone else's behalf: agent commands and code under test.

Built by bubblewrap with the same hardening for both profiles (workers/agent_sandbox.py, verification_view):
- no capabilities, whatever user the worker runs as: a user namespace of its own (`--unshare-user`; bwrap
  creates none for root on its own), `--cap-drop ALL`, no nested user namespaces (`--disable-userns`),
  no_new_privs, and the seccomp filter of system/seccomp.py (mounts, namespaces, ptrace, keyrings, bpf...);
- an allow-list of what is visible, on an empty root: the system's folders read-only (SYSTEM; /etc without the
  files only their owner may read, system/covers.py), a private /tmp, /dev and /proc, the command's own writable
  folders, and read-only the toolchains its commands need even under a home folder (toolchain_roots: the
  worker's PATH and interpreter, the programs a command names, paths the operator declares). The worker
  user's home, every FLEET_HOME, every registered repository, /run, /var, /tmp and /dev/shm (where Unix
  sockets live) and other users' homes are absent, not covered; inside a shown folder, FLEET_HOME, the
  repository, credential stores and what others may not read are covered too (with no capabilities, a cover
  cannot be unmounted);
- its own PID, IPC, UTS and network namespaces: a private loopback only, so neither the host's loopback
  servers (Redis, PostgreSQL, the web app) nor abstract Unix sockets are reachable. An agent that needs its
  model API gets it through the egress proxy (workers/egress.py): a Unix socket bound in, a relay on the
  sandbox's own loopback, and an allow-list of host:port outside; a setup command gets its package indexes the
  same way. Only a repository that allows the network to its tests (`test_network`) or its setup
  (`setup_network = host`) shares the host's network with them.
The environment is the caller's allow-list (workers/agents/base.py agent_env, verification/runner.py).
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from system.covers import covered, empty_file_over, generation, outermost, start_looking
from system.files import program_on
from system.sandbox_start import BLOCK_SLOT, INFO_SLOT, SECCOMP_SLOT, STATUS_SLOT, copy_slot, cover_slots
from system.seccomp import SeccompUnavailable, filter_program
from system.tmpfs import private_folders, sandbox_tmpfs_bytes

log = logging.getLogger(__name__)

NETWORK_CHOICES = ("none", "on")
AUTO = "auto"
MISSING = "the agent ran without a sandbox (bubblewrap is not installed)"
BROKEN = "the agent ran without a sandbox (bubblewrap cannot create one here: {})"
TURNED_OFF = "the agent ran without a sandbox (turned off by {})"
TESTS_MISSING = "tests ran without a sandbox (bubblewrap is not installed)"
TESTS_BROKEN = "tests ran without a sandbox (bubblewrap cannot create one here: {})"
NO_SECCOMP = "the sandbox has no seccomp filter ({})"
PROBE_TIMEOUT = 10.0
# What bubblewrap says when the machine was short of processes or memory at that moment: no answer about the machine.
SHORT_OF_RESOURCES = ("Resource temporarily unavailable", "Cannot allocate memory")

SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
TOOLCHAIN_LEAVES = ("bin", "sbin", "shims", ".bin")  # .bin: an npm prefix's node_modules/.bin
SANDBOX_DEVICES = ("/dev/null", "/dev/zero", "/dev/stdin", "/dev/stdout", "/dev/stderr")  # bwrap's `--dev` makes them
FLEET_PACKAGES = ("system", "db", "verification", "workers", "orchestrator")
# A root worker's sandbox is the host's root to /proc's permission checks, which bwrap covers only in part: the
# kernel's settings (core_pattern runs a program as the host's root at a crash) and SysRq go read-only, and what only
# root may read is emptied (the host's timers name its processes, vmallocinfo gives the kernel's addresses, kpage*
# every physical page's use and flags: what Rowhammer and page-sharing side channels look for).
PROC_COVERS = ("--ro-bind", "/proc/sys", "/proc/sys", "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger")
PROC_SECRETS = (
    "timer_list",
    "vmallocinfo",
    "slabinfo",
    "pagetypeinfo",
    "sched_debug",
    "keys",
    "kcore",
    "latency_stats",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
)
HARDENING = (
    "--unshare-user", "--disable-userns", "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc",
    "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
)  # fmt: skip


@dataclass(frozen=True)
class View:
    """What one confined command sees besides the system: its writable folders and the read-only extras."""

    workdir: Path
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    overlays: tuple[tuple[Path, Path], ...] = ()  # (file, where it shows read-only)
    # A folder of the sandbox's own memory (nothing of it is on the host, and it ends with the sandbox), the
    # folders to make in it, and (host file, where a writable copy of it shows): the agent's git dir.
    memory: Path | None = None
    memory_dirs: tuple[Path, ...] = ()
    copies: tuple[tuple[Path, Path], ...] = ()
    network: bool = False  # True: the host's network (tests or a setup the repository allows it to)
    egress_socket: Path | None = None  # the egress proxy's socket, bound in at the same path


def bwrap_missing() -> str | None:
    """Why no agent sandbox can start on this machine (as the attempt's warning), or None when it can."""
    exe = _bwrap(os.environ.get("PATH"))
    if exe is None:
        return MISSING
    problem = sandbox_problem(exe)
    return BROKEN.format(problem) if problem is not None else None


def unsandboxed_tests_warning() -> str:
    """Why the last test runs had no sandbox, for the verification's warnings."""
    exe = _bwrap(os.environ.get("PATH"))
    return TESTS_MISSING if exe is None else TESTS_BROKEN.format(sandbox_problem(exe) or "unknown")


def _bwrap(path_var: str | None) -> str | None:
    """bubblewrap's program on path_var (the worker's PATH): every command asks."""
    return program_on("bwrap", path_var)


_probed: dict[str, str | None] = {}  # each program's answer, once it gave one
_probing = threading.Lock()  # one probe at a time: the threads that ask meanwhile share its answer
_probes_done: dict[str, int] = {}  # each program's probes ended: a call that waited through one takes its answer


def sandbox_problem(exe: str) -> str | None:
    """Why `exe` cannot start a hardened sandbox on this machine (containers often forbid user namespaces), or None.

    Asked once per program. A probe that could not run (no process to spare, too slow on a loaded machine), or that
    bubblewrap ended for want of processes or memory at that moment (EAGAIN, ENOMEM: an agent that used up its
    user's processes, say), is no answer, and never a reason to go without a sandbox: the command runs sandboxed
    (where bubblewrap then gives up, the run is `sandbox_failed`, an error in bubblewrap's words), and the next
    call probes again."""
    asked_after = _probes_done.get(exe, 0)
    with _probing:
        if exe in _probed:
            return _probed[exe]
        if _probes_done.get(exe, 0) != asked_after:
            return None  # a probe ended while this call waited, and could not answer either
        argv = [exe, *HARDENING, *_system_binds(), "--dev", "/dev", "--proc", "/proc", "--unshare-net", "true"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _no_answer(exe, asked_after, f"could not run ({exc})")
            return None
        problem = None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")
        if problem is not None and any(reason in problem for reason in SHORT_OF_RESOURCES):
            _no_answer(exe, asked_after, f"was short of resources ({problem})")
            return None
        _probed[exe] = problem
        return problem


def _no_answer(exe: str, asked_after: int, why: str) -> None:
    """A probe that told nothing about the machine: counted as ended (its waiters take it), never kept."""
    _probes_done[exe] = asked_after + 1
    log.warning("the sandbox probe %s; this command runs sandboxed all the same", why)


def seccomp_problem() -> str | None:
    """Why sandboxes run without the seccomp filter, or None when they have it."""
    try:
        filter_program()
    except (SeccompUnavailable, OSError) as exc:
        return str(exc)
    return None


def wants_network(setting: str, repo_choice: str | None, agent_needs_network: bool) -> bool:
    """The repository's choice, else FLEET_AGENT_NETWORK, else (auto) what the agent needs."""
    choice = repo_choice or setting
    return agent_needs_network if choice == AUTO else choice == "on"


def confine(view: View) -> tuple[str, ...]:
    """The argv prefix that runs a command confined to view (bwrap must be usable: see bwrap_missing).

    Only run_process can start it: it fills the descriptor slots (system/sandbox_start.py)."""
    with _SHOWN_ONCE:  # a hundred slots starting at once would each build it (and walk /etc) before it is kept
        shown, hidden = _shown(view.readable, view.hidden, generation(), sandbox_tmpfs_bytes())
    argv = [*shown, *cover_slots(hidden), *_binds("--bind", map(_real, view.writable))]
    if view.egress_socket is not None:
        argv += _binds("--bind", [_real(view.egress_socket.parent)])
    argv += _memory(view)
    for source, dest in view.overlays:
        argv += ["--ro-bind", str(source), str(dest)]
    argv += ["--chdir", str(_real(view.workdir))]
    if not view.network:
        argv.append("--unshare-net")
    argv += ["--info-fd", INFO_SLOT, "--json-status-fd", STATUS_SLOT]
    argv += ["--seccomp", SECCOMP_SLOT] if seccomp_problem() is None else ["--block-fd", BLOCK_SLOT]
    return tuple(argv)


_SHOWN_ONCE = threading.Lock()


@functools.lru_cache(maxsize=64)
def _shown(
    readable: tuple[Path, ...], hidden: tuple[Path, ...], covers_of: int, tmpfs_bytes: int
) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """bwrap, the hardening and everything read-only, and what to cover in it (system/covers.py): the same for every
    command of a repository, so built once for each generation of covers (covers_of: covers.generation()).

    The covers come before the writable folders, so a worktree inside a covered FLEET_HOME is bound over its cover.
    """
    exe = _bwrap(os.environ.get("PATH"))
    if exe is None:
        raise FileNotFoundError("bwrap")
    shown = outermost(readable)
    argv = [exe, *HARDENING, *_system_binds(), *private_folders(tmpfs_bytes), "--proc", "/proc", *PROC_COVERS]
    argv += [
        arg for name in PROC_SECRETS if os.path.exists(f"/proc/{name}") for arg in empty_file_over(f"/proc/{name}")
    ]
    argv += _binds("--ro-bind", shown)
    return tuple(argv), covered(hidden, [*shown, *map(Path, SYSTEM)], _toolchains(shown))


def _toolchains(shown: Sequence[Path]) -> list[Path]:
    return [folder for folder in shown if folder.is_dir() and not _is_system(folder)]


def look_through_toolchains(path_var: str | None = None) -> None:
    """Start looking through the toolchains on PATH (the worker's by default) for what others may not read
    (system/covers.py), ahead of the first sandbox, which waits for the walks' answers: a worker starts them as it
    starts, beside its imports, where the first wave's sandboxes waited for them. Nothing without bubblewrap."""
    if _bwrap(os.environ.get("PATH")) is not None:
        start_looking(_toolchains(outermost(toolchain_roots(path_var or os.environ.get("PATH", os.defpath)))))


def _real(path: Path) -> Path:
    """path.resolve(), its folders' part remembered (_real_folder); the last part is looked at each time."""
    if not path.is_absolute() or ".." in path.parts or path.parent == path:
        return path.resolve()
    here = _real_folder(path.parent) / path.name
    return here.resolve() if here.is_symlink() else here


@functools.lru_cache(maxsize=1024)
def _real_folder(path: Path) -> Path:
    """The resolution of a folder holding what a sandbox binds: Fleet's own folders (FLEET_HOME's, a pool's),
    which every command of an attempt names, are looked at once, where resolve() looks at each part each time."""
    return _real(path)


def _memory(view: View) -> list[str]:
    """The view's memory folder, its folders and its copies (bwrap reads each from a descriptor the start opens)."""
    if view.memory is None:
        return []
    argv = ["--tmpfs", str(view.memory)]
    for folder in view.memory_dirs:
        argv += ["--dir", str(folder)]
    for source, dest in view.copies:
        argv += ["--file", copy_slot(source), str(dest)]
    return argv


def _system_binds() -> list[str]:
    """The system's folders, read-only; a folder that is a link on the host (/bin -> usr/bin) stays a link."""
    args: list[str] = []
    for name in SYSTEM:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return args


def _binds(flag: str, paths: Iterable[Path]) -> list[str]:
    return [arg for path in paths for arg in (flag, str(path), str(path))]


def toolchain_roots(path_var: str, commands: Sequence[str] = (), declared: Sequence[Path] = ()) -> tuple[Path, ...]:
    """What a confined command needs read-only beyond the system (see _toolchain_roots), remembered per arguments:
    every attempt of a repository asks the same."""
    return _toolchain_roots(path_var, tuple(commands), tuple(declared))


@functools.lru_cache(maxsize=256)
def _toolchain_roots(path_var: str, commands: tuple[str, ...], declared: tuple[Path, ...]) -> tuple[Path, ...]:
    """What a confined command needs read-only beyond the system: the toolchains on PATH (a pyenv, an nvm, a
    virtualenv: the folder above a `bin` or `shims`), the worker's interpreter, PYTHONPATH and Fleet's own
    packages, the programs and folders named by absolute path in commands, and declared paths."""
    named = [Path(word) for command in commands for word in _path_words(command)]
    programs = [Path(sys.executable), *(p for p in named if p.is_file())]
    roots = [_toolchain_root(Path(entry)) for entry in path_var.split(os.pathsep) if entry.startswith("/")]
    roots += [_program_root(p) for program in programs for p in (program, program.resolve())]
    roots += [p for p in named if p.is_dir() and p != Path("/")]  # `--find-links /srv/wheels`
    roots += [Path(sys.prefix), Path(sys.base_prefix), *_fleet_packages(), *_python_path(), *declared]
    return tuple(p for p in dict.fromkeys(roots) if p.exists() and not _is_system(p))


def host_paths_named(command: str) -> list[str]:
    """The absolute paths in command that would show its sandbox more of the host than the system's folders and a
    toolchain's program (`/opt/venv/bin/pytest`): any other folder or file (`--basetemp=/run/postgresql` showed
    PostgreSQL's socket, `-c /root/.config/pip/pip.conf` an index's token), wherever it exists. The sandbox's own
    devices (`> /dev/null`) are none of the host's."""
    named = [Path(word) for word in _path_words(command) if word not in SANDBOX_DEVICES]
    return [str(path) for path in named if not _is_system(path) and not _in_toolchain_leaf(path)]


def _in_toolchain_leaf(path: Path) -> bool:
    return ".." not in path.parts and path.parent.name in TOOLCHAIN_LEAVES


def _path_words(command: str) -> list[str]:
    """The absolute paths a command names, as words or as `--option=/path` values (never run, only looked at)."""
    words = [word.rpartition("=")[2] if "=" in word else word for word in command.split()]
    return [word.strip("'\"") for word in words if word.strip("'\"").startswith("/")]


def _toolchain_root(folder: Path) -> Path:
    """The folder above a `bin` or `shims` (~/.pyenv for ~/.pyenv/shims), but never a home or ~/.local itself."""
    if folder.name not in TOOLCHAIN_LEAVES or folder.parent == Path.home() or folder.parent.name == ".local":
        return folder
    return folder.parent


def _program_root(program: Path) -> Path:
    """A program's toolchain when it sits in a `bin` (a virtualenv's python), else the program file alone."""
    return _toolchain_root(program.parent) if program.parent.name in TOOLCHAIN_LEAVES else program


def _is_system(path: Path) -> bool:
    resolved = path.resolve()
    return resolved == Path("/") or any(resolved.is_relative_to(name) for name in SYSTEM)


def _python_path() -> list[Path]:
    """The worker's absolute PYTHONPATH entries: where an admin-listed agent class may live."""
    return [Path(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry.startswith("/")]


def _fleet_packages() -> list[Path]:
    """Fleet's own packages, read-only: agents run Fleet's helpers (the class-agent host, the egress relay)."""
    root = Path(__file__).resolve().parent.parent
    return [root / name for name in FLEET_PACKAGES]


def verification_view(
    checkout: Path, report_dir: Path, network: bool, readable: Sequence[Path], hidden: Sequence[Path]
) -> View:
    """The code under test's view: its checkout and report folder writable (but for its git pointer), its
    toolchains read-only."""
    return View(
        workdir=checkout,
        writable=(checkout, report_dir),
        readable=tuple(readable),
        hidden=tuple(hidden),
        overlays=git_pointer(checkout),
        network=network,
    )


def seccomp_warning() -> str | None:
    problem = seccomp_problem()
    return NO_SECCOMP.format(problem) if problem is not None else None


def setup_view(
    checkout: Path,
    scratch: Path,
    readable: Sequence[Path],
    hidden: Sequence[Path],
    egress_socket: Path | None = None,
    host_network: bool = False,
) -> View:
    """A setup command's view: the verification's, with a scratch folder (its HOME). What it builds may be a diff's
    code (a changed setup.py), so its network is its own: a private loopback, and the egress proxy's socket when
    given (its package indexes); the host's network only when the repository chose it (host_network)."""
    writable, pointer = (checkout, scratch), git_pointer(checkout)
    return View(
        checkout, writable, tuple(readable), tuple(hidden), pointer, network=host_network, egress_socket=egress_socket
    )


def git_pointer(checkout: Path) -> tuple[tuple[Path, Path], ...]:
    """The checkout's `.git`, shown read-only over itself: what runs in the checkout cannot point the worker's own
    git commands there (run by discovery after it, as the verification's restore is) at a git dir of its making,
    whose configuration would run commands (a clean filter) outside the sandbox."""
    pointer = _real(checkout) / ".git"  # where the checkout is bound, as its writable bind resolves it
    return ((pointer, pointer),) if os.path.lexists(pointer) and not pointer.is_symlink() else ()


def scratch_env(scratch: Path) -> dict[str, str]:
    """HOME (and its XDG cache) and TMPDIR inside a scratch folder, made here: for setup and test commands."""
    home, tmp = scratch / "home", scratch / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")}
