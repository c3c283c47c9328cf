"""The escape suite's harness: a host with what no sandbox may reach, and the three profiles' sandboxes (the
agent's, the tests', a setup command's), built by the code the worker uses and started as root and as an
unprivileged user (tests/security/test_confinement.py)."""

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
from system.sandbox import confine, verification_view
from verification.environment import SetupRoute, SetupSandbox
from workers.agent_sandbox import SandboxPlan, build_sandbox
from workers.agents.scripted import write_sample_repo
from workers.egress import RELAY_SCRIPT, EgressProxy, relay_argv
from workers.egress_rules import SETUP_SETTING
from workers.worktree import WorktreePool, owning_gitdir

NOBODY = 65534
PY = "/usr/bin/python3"  # the system's interpreter: visible to both users (the worker's may sit under /root)


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
