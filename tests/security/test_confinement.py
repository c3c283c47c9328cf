"""The escape suite, confinement level: each probe tries one escape from the sandbox agents and tests share.

The three profiles (the agent's, the tests', a setup command's) are built by the code the worker uses
(system/sandbox.py), and run as the worker would: as root (this machine, CI, many containers) and as an
unprivileged user (setpriv to uid 65534). Each probe is a small program that prints what it got; the test asserts
the escape failed. tests/security/test_escape_e2e.py runs probe agents and probe test suites through a whole Fleet.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from system.git import git
from system.mirror import ensure_mirror
from system.process import run_process
from system.sandbox import (
    bwrap_missing,
    confine,
    seccomp_problem,
    verification_view,
)
from tests.security.probes import REACH
from verification.environment import SetupRoute, SetupSandbox
from workers.agent_sandbox import SandboxPlan, build_sandbox
from workers.agents.scripted import write_sample_repo
from workers.egress import RELAY_SCRIPT, EgressProxy, relay_argv
from workers.egress_rules import SETUP_SETTING
from workers.worktree import WorktreePool, owning_gitdir

IN_CI = os.environ.get("CI", "").lower() == "true"
NOBODY = 65534
PY = "/usr/bin/python3"  # the system's interpreter: visible to both users (the worker's may sit under /root)

if bwrap_missing() is not None and IN_CI:
    raise RuntimeError(f"the escape suite needs bubblewrap under CI: {bwrap_missing()}")
pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")


@dataclass
class Host:
    """What a worker's machine holds that no sandbox may reach."""

    root: Path  # a folder of the test's, readable by both users
    canary: str
    fleet_home: Path
    other_repo: Path
    home_secret: Path
    shown: Path  # a toolchain the sandbox shows read-only...
    covered: Path  # ...with a credential store inside it, covered
    unix_socket: Path
    abstract: str
    tcp_port: int


def _own(path: Path, uid: int) -> None:
    for folder, _, files in os.walk(path):
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(Path(folder) / name, uid, uid)


@pytest.fixture
def host() -> Iterator[Host]:
    canary = f"canary-{uuid.uuid4().hex}"
    root = Path(tempfile.mkdtemp(prefix="fleet-escape-"))
    root.chmod(0o755)
    home = root / "fleet-home"
    (home / "mirrors").mkdir(parents=True)
    (home / "fleet.db").write_text(canary)
    other = root / "other-repo"
    other.mkdir()
    (other / "unmerged.txt").write_text(canary)
    shown = root / "toolchain"
    (shown / "bin").mkdir(parents=True)
    (shown / "secrets").mkdir()
    (shown / "secrets" / "id_rsa").write_text(canary)
    home_secret = Path.home() / f".fleet-escape-{uuid.uuid4().hex[:8]}"
    home_secret.write_text(canary)
    with socket.socket(socket.AF_UNIX) as unix, socket.socket(socket.AF_UNIX) as abstract, socket.socket() as tcp:
        unix.bind(str(root / "tmux.sock"))
        abstract.bind(f"\0fleet-escape-{canary}")
        tcp.bind(("127.0.0.1", 0))
        for server in (unix, abstract, tcp):
            server.listen(8)
        try:
            yield Host(
                root, canary, home, other, home_secret, shown, shown / "secrets", root / "tmux.sock",
                f"fleet-escape-{canary}", tcp.getsockname()[1],
            )  # fmt: skip
        finally:
            home_secret.unlink()
            shutil.rmtree(root)


@dataclass
class Sandbox:
    """A confinement built by the worker's code, started by its code as a given user."""

    wrapper: tuple[str, ...]
    env: dict[str, str]
    workdir: Path
    user: str
    code: Path  # Fleet's launch code, where the user can read it
    helpers: int = 0  # Fleet's own processes in the sandbox besides the command's: the egress relay

    def run(self, program: str) -> subprocess.CompletedProcess[str]:
        """program in the sandbox, started as the worker starts it (run_process); stderr comes with stdout."""
        argv = [*self.wrapper, "/bin/sh", "-c", program]
        if self.user == "root":
            done = run_process(argv, cwd=self.workdir, env=self.env, timeout=60)
            code = done.exit_code if done.exit_code is not None else -1
            return subprocess.CompletedProcess(argv, code, done.output, "")
        worker = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", PY, "-c", LAUNCH]
        request = json.dumps([argv, str(self.workdir), self.env])
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.code)}
        done_as_user = subprocess.run([*worker, request], capture_output=True, text=True, env=env, timeout=60)
        return subprocess.CompletedProcess(argv, done_as_user.returncode, done_as_user.stdout, done_as_user.stderr)

    def python(self, code: str) -> str:
        done = self.run(f"{PY} -c {shlex.quote(code)} 2>&1")
        return done.stdout.strip()


# A worker running as the user: Fleet's own start of a confined command (system/process.py), from a copy of
# its code the user can read.
LAUNCH = """
import json, sys
from pathlib import Path
from system.process import run_process
argv, workdir, env = json.loads(sys.argv[1])
done = run_process(argv, cwd=Path(workdir), env=env, timeout=60)
sys.stdout.write(done.output)
sys.exit(done.exit_code if done.exit_code is not None else 125)
"""


def _launch_code(host: Host) -> Path:
    """The system package, copied where both users can read it (the checkout may sit in root's home)."""
    code = host.root / "fleet-code"
    if not code.exists():
        shutil.copytree(Path(__file__).resolve().parents[2] / "system", code / "system")
    return code


def _agent_sandbox(host: Host, work: Path, user: str) -> Sandbox:
    source = work / "repo"
    write_sample_repo(source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    mirror = ensure_mirror(host.fleet_home / "mirrors", "repo-1", str(source), sha)
    pool = WorktreePool(host.fleet_home / "worktrees", mirror, size=1)
    worktree = pool.lease(sha).__enter__()
    gitdir = owning_gitdir(worktree.path, mirror)
    assert gitdir is not None
    plan = SandboxPlan(
        worktree=worktree.path,
        worktree_gitdir=gitdir,
        mirror=mirror,
        base_sha=sha,
        attempt_dir=host.fleet_home / "attempts" / "1",
        home=host.fleet_home / "attempts" / "1" / "home",
        hidden=(host.fleet_home, source, host.covered),
        readable=(host.shown,),
    )
    sandbox = build_sandbox(plan)
    if user != "root":
        _own(host.fleet_home, NOBODY)
    env = {"PATH": "/usr/bin:/bin", **sandbox.env}
    return Sandbox(sandbox.wrapper, env, worktree.path, user, _launch_code(host))


def _test_sandbox(host: Host, work: Path, user: str) -> Sandbox:
    checkout, reports = host.fleet_home / "worktrees" / "verify", host.fleet_home / "attempts" / "1" / "candidate"
    for folder in (checkout, reports):
        folder.mkdir(parents=True)
    (checkout / ".git").write_text(f"gitdir: {host.fleet_home / 'mirrors' / 'repo.git'}\n")  # a pooled checkout's
    if user != "root":
        _own(host.fleet_home, NOBODY)
    view = verification_view(checkout, reports, False, (host.shown,), (host.fleet_home, host.covered))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(reports), "TMPDIR": str(reports)}
    return Sandbox(confine(view), env, checkout, user, _launch_code(host))


@contextmanager
def _setup_sandbox(host: Host, user: str) -> Iterator[Sandbox]:
    """A setup command's, as the verification builds it: its network the egress proxy's, with nothing allowed."""
    checkout, scratch = host.fleet_home / "worktrees" / "setup", host.fleet_home / "attempts" / "1" / "setup"
    checkout.mkdir(parents=True)
    (checkout / ".git").write_text(f"gitdir: {host.fleet_home / 'mirrors' / 'repo.git'}\n")
    socket_path = Path(tempfile.mkdtemp(prefix="fleet-egress-")) / "gate" / "proxy.sock"

    @contextmanager
    def route() -> Iterator[SetupRoute]:
        with EgressProxy() as proxy, proxy.open(socket_path, [], setting=SETUP_SETTING):
            if user != "root":  # the worker is that user: its gate's folder is its own
                _own(socket_path.parent.parent, NOBODY)
            yield SetupRoute(socket_path, relay_argv(PY, RELAY_SCRIPT, socket_path, 0), list, list)

    readable = (host.shown, RELAY_SCRIPT.parent)
    setup = SetupSandbox(scratch, readable, (host.fleet_home, host.covered), "proxy", route)
    try:
        with setup.confining(checkout, {"PATH": "/usr/bin:/bin"}) as confined:
            if user != "root":
                _own(host.fleet_home, NOBODY)
            yield Sandbox(confined.wrapper, dict(confined.env), checkout, user, _launch_code(host), helpers=1)
    finally:
        shutil.rmtree(socket_path.parent.parent, ignore_errors=True)


@pytest.fixture(params=["agent", "tests", "setup"])
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["root", "unprivileged"])
def sandbox(request: pytest.FixtureRequest, host: Host, profile: str) -> Iterator[Sandbox]:
    user = str(request.param)
    if user == "root" and os.getuid() != 0:
        pytest.skip("the root half needs a root worker")
    work = host.root / "work"
    work.mkdir()
    who = "root" if user == "root" else "nobody"
    if profile == "setup":
        with _setup_sandbox(host, who) as setup:
            yield setup
        return
    build = _agent_sandbox if profile == "agent" else _test_sandbox
    yield build(host, work, who)


def test_an_honest_command_runs_and_writes_its_own_folder(sandbox: Sandbox) -> None:
    done = sandbox.run("echo honest > made.txt && cat made.txt && git --version")
    assert done.returncode == 0, done.stderr
    assert "honest" in done.stdout and (sandbox.workdir / "made.txt").read_text() == "honest\n"


def test_no_capabilities_and_no_new_privileges(sandbox: Sandbox) -> None:
    status = sandbox.run("cat /proc/self/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapPrm"].strip() == fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    if seccomp_problem() is None:
        assert fields["Seccomp"].strip() == "2"


def test_mounts_cannot_be_undone_or_made(sandbox: Sandbox, host: Host) -> None:
    covered = host.covered / "id_rsa"
    tries = [
        f"umount {host.covered}",
        f"umount -l {host.covered}",
        "mount -o remount,bind,rw /usr",
        "mount -t tmpfs none /mnt",
        "unshare -Urm true",
        "unshare -m true",
    ]
    for attempt in tries:
        assert sandbox.run(attempt).returncode != 0, attempt
    assert host.canary not in sandbox.run(f"cat {covered} 2>&1").stdout
    assert sandbox.run("touch /usr/fleet-escape 2>&1").returncode != 0
    assert not Path("/usr/fleet-escape").exists()


def test_the_worker_and_other_processes_cannot_be_seen_or_traced(sandbox: Sandbox) -> None:
    assert sandbox.run(f"test -e /proc/{os.getpid()}/cmdline && echo visible").stdout.strip() != "visible"
    attach = "import ctypes; print(ctypes.CDLL(None, use_errno=True).ptrace(16, 1, 0, 0))"  # PTRACE_ATTACH to pid 1
    assert sandbox.python(attach).split()[0] == "-1"
    processes = int(sandbox.run("ps -e -o pid= | wc -l").stdout)
    assert processes - sandbox.helpers in {2, 3, 4}  # sh, ps, wc, bwrap's init


def test_nothing_of_the_host_but_the_allow_list_is_visible(sandbox: Sandbox, host: Host) -> None:
    for path in (host.fleet_home / "fleet.db", host.other_repo / "unmerged.txt", host.home_secret):
        done = sandbox.run(f"cat {path} 2>&1")
        assert host.canary not in done.stdout, path
    listing = sandbox.run("ls -a / /run /var /home /root /dev/shm 2>&1").stdout
    assert "postgresql" not in listing and host.home_secret.name not in listing
    assert sandbox.run(f"ls {host.root}").stdout.split() in (["fleet-home", "toolchain"], ["toolchain", "fleet-home"])
    assert sandbox.run(f"ls {host.shown}").stdout.split() == ["bin", "secrets"]  # shown, its secrets covered
    for secret in ("/etc/shadow", "/etc/gshadow"):
        assert "root:" not in sandbox.run(f"cat {secret} 2>&1").stdout


def test_no_socket_of_the_host_can_be_reached(sandbox: Sandbox, host: Host) -> None:
    code = """
for family, address in [
    (socket.AF_UNIX, UNIX), (socket.AF_UNIX, "\\0" + ABSTRACT), (socket.AF_UNIX, "/var/run/postgresql/.s.PGSQL.5432"),
    (socket.AF_INET, ("127.0.0.1", PORT)), (socket.AF_INET, ("127.0.0.1", 6379)), (socket.AF_INET, ("127.0.0.1", 5432)),
]:
    print(reach(family, address))
"""
    values = f"UNIX, ABSTRACT, PORT = {str(host.unix_socket)!r}, {host.abstract!r}, {host.tcp_port}\n"
    code = REACH + values + code
    results = sandbox.python(code).splitlines()
    assert len(results) == 6 and "REACHED" not in results, results


def test_the_checkouts_git_pointer_cannot_be_rewritten(sandbox: Sandbox) -> None:
    """The worker's own git commands in the checkout after the sandbox find its git dir through `.git`: a pointer
    to a git dir of the sandbox's making would have them run its configuration's commands (a clean filter)."""
    pointer = sandbox.workdir / ".git"
    before = pointer.read_bytes()
    for attempt in ("echo 'gitdir: /tmp/planted' > .git", "rm -f .git", "mv .git moved"):
        sandbox.run(attempt)
        assert pointer.read_bytes() == before, attempt


def test_no_fifo_can_be_made(sandbox: Sandbox) -> None:
    """After the sandbox the worker's git opens the checkout's `.gitignore` and `.gitattributes` files: a fifo there
    stopped its status, diff, reset or checkout until git's 600 s timeout, holding the slot."""
    if seccomp_problem() is not None:
        pytest.skip(f"no seccomp filter here: {seccomp_problem()}")
    for attempt in ("mkfifo .gitignore", "mkdir -p deep && mkfifo deep/.gitattributes"):
        assert sandbox.run(attempt).returncode != 0, attempt
    assert "PermissionError" in sandbox.python(
        "import os\ntry:\n    os.mkfifo('f')\nexcept OSError as e:\n    print(type(e).__name__)"
    )
    assert not any(path.is_fifo() for path in sandbox.workdir.rglob("*"))
    made = sandbox.python("import os, stat\nos.mknod('plain', stat.S_IFREG | 0o644)\nprint(os.path.isfile('plain'))")
    assert made.strip() == "True"  # a regular file through mknod is still made


def test_a_shown_folder_and_the_system_are_read_only(sandbox: Sandbox, host: Host) -> None:
    for path in (host.shown / "bin" / "dropped", Path("/etc/fleet-escape"), host.fleet_home / "dropped"):
        sandbox.run(f"echo x > {path}")
        assert not path.exists(), path


@pytest.fixture
def etc_secrets(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Path]]]:
    """Files in /etc only their owner may read, as a machine keeps them (an SSH host key, a WireGuard folder),
    owned by the worker's user: made before the sandbox is built."""
    canary = f"canary-{uuid.uuid4().hex}"
    key, folder = Path(f"/etc/fleet-escape-{canary[7:15]}_host_key"), Path(f"/etc/fleet-escape-{canary[7:15]}-wg")
    try:
        key.write_text(canary)
        folder.mkdir(mode=0o700)
    except OSError as exc:
        pytest.skip(f"/etc is not writable here ({exc.strerror})")
    (folder / "wg0.conf").write_text(canary)
    key.chmod(0o600)
    owner = 0 if request.node.callspec.params.get("sandbox") == "root" else NOBODY
    for path in (key, folder, folder / "wg0.conf"):
        os.chown(path, owner, owner)
    try:
        yield canary, [key, folder / "wg0.conf"]
    finally:
        key.unlink()
        shutil.rmtree(folder)


def test_what_only_its_owner_may_read_in_etc_is_covered(etc_secrets: tuple[str, list[Path]], sandbox: Sandbox) -> None:
    """A worker's sandbox is its user in a namespace of its own (root for a root worker), so a file in /etc only that
    user may read (a host's SSH key, a VPN's or a certificate's private key, a cluster's admin config) was read."""
    canary, secrets = etc_secrets
    for secret in secrets:
        assert canary not in sandbox.run(f"cat {secret} 2>&1").stdout, secret
    assert sandbox.run("test -r /etc/passwd && echo shown").stdout.strip() == "shown"  # what all may read stays


def test_the_kernels_settings_cannot_be_opened_for_writing(sandbox: Sandbox) -> None:
    """A root worker's sandbox is the host's root to /proc/sys's permission checks: it could set core_pattern, and
    the kernel runs that program as the host's root at the next crash. Only opened here: nothing is written."""
    code = """
import os
for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/fs/file-max", "/proc/sys/vm/drop_caches"):
    try:
        os.close(os.open(path, os.O_WRONLY))
        print(path, "OPENED")
    except OSError as exc:
        print(path, type(exc).__name__)
"""
    lines = sandbox.python(code).splitlines()
    assert len(lines) == 3 and not any(line.endswith("OPENED") for line in lines), lines
    assert sandbox.run("cat /proc/sys/kernel/osrelease").stdout.strip() == os.uname().release  # still readable


def test_what_only_root_may_read_in_proc_is_emptied(sandbox: Sandbox) -> None:
    """To /proc's permission checks a root worker's sandbox is the host's root: the host's timers named its processes
    and their pids, vmallocinfo gave the kernel's addresses."""
    shown = [name for name in ("timer_list", "vmallocinfo") if Path(f"/proc/{name}").exists()]
    if not shown:
        pytest.skip("this kernel has neither /proc/timer_list nor /proc/vmallocinfo")
    for name in shown:
        assert sandbox.run(f"head -c 100 /proc/{name} 2>/dev/null").stdout == "", name
    assert sandbox.run("head -1 /proc/meminfo").stdout.startswith("MemTotal:")  # what all may read stays
