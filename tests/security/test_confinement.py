"""The escape suite, confinement level: each probe tries one escape from the sandbox agents and tests share.

The three profiles (the agent's, the tests', a setup command's) are built by the code the worker uses
(system/sandbox.py), and run as the worker would: as root (this machine, CI, many containers) and as an
unprivileged user (setpriv to uid 65534). Each probe is a small program that prints what it got; the test asserts
the escape failed. tests/security/test_escape_e2e.py runs probe agents and probe test suites through a whole Fleet.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from system import tmpfs
from system.sandbox import bwrap_missing, seccomp_problem
from tests.security.conftest import NOBODY, PY, Host, Sandbox
from tests.security.probes import REACH

IN_CI = os.environ.get("CI", "").lower() == "true"

if bwrap_missing() is not None and IN_CI:
    raise RuntimeError(f"the escape suite needs bubblewrap under CI: {bwrap_missing()}")
pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")


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


@pytest.fixture
def toolchain_secrets(request: pytest.FixtureRequest, host: Host) -> tuple[list[Path], Path]:
    """Files in a shown toolchain only their owner may read, as an install or its user can leave them (a pip.conf with
    an index's token, a folder of its own), owned by the worker's user, and one all may read: made before the
    sandbox is built."""
    library = host.shown / "lib"
    conf, folder, module = host.shown / "pip.conf", library / "private", library / "site.py"
    folder.mkdir(parents=True)
    for path, mode in ((conf, 0o600), (folder / "token", 0o644), (folder, 0o700), (module, 0o644), (library, 0o755)):
        if not path.is_dir():
            path.write_text("shown" if path == module else host.canary)
        path.chmod(mode)
    owner = 0 if request.node.callspec.params.get("sandbox") == "root" else NOBODY
    for path in (conf, folder, folder / "token", module, library):
        os.chown(path, owner, owner)
    return [conf, folder / "token"], module


def test_what_only_its_owner_may_read_in_a_shown_toolchain_is_covered(
    toolchain_secrets: tuple[list[Path], Path], sandbox: Sandbox, host: Host
) -> None:
    """A toolchain under a home folder (~/.pyenv, ~/.cargo, a virtualenv) is shown for the commands that need it, and
    a file there only the worker's user may read was read through its owner's permission: only the credential
    stores known by name were covered."""
    secrets, module = toolchain_secrets
    for secret in secrets:
        assert host.canary not in sandbox.run(f"cat {secret} 2>&1").stdout, secret
    assert sandbox.run(f"cat {module}").stdout == "shown"  # what all may read stays


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


TMPFS_PROBE = """
import os
for path in ("/tmp/filler", "/dev/shm/filler", "/dev/filler"):
    try:
        with open(path, "wb") as handle:
            handle.write(bytes(SIZE // 2))  # what fits
            print(path, "held half")
            handle.write(bytes(SIZE))
        print(path, "held more")
    except OSError as exc:
        print(path, "refused:", exc.strerror)
"""
SMALL_TMPFS = 8 * 2**20


@pytest.fixture
def small_tmpfs() -> Iterator[None]:
    """Sandboxes built while it is in force give their /tmp and /dev/shm SMALL_TMPFS (FLEET_SANDBOX_TMP_MB)."""
    tmpfs.limit_sandbox_tmpfs(SMALL_TMPFS)
    try:
        yield
    finally:
        tmpfs.limit_sandbox_tmpfs(tmpfs.DEFAULT_TMPFS)


def test_a_sandboxs_own_tmp_and_shm_hold_no_more_than_their_size(small_tmpfs: None, sandbox: Sandbox) -> None:
    """They are tmpfs, memory no address-space limit counts: unsized, code under test (no memory cgroup) filled the
    host's memory there. /dev itself is read-only."""
    assert sandbox.python(f"SIZE = {SMALL_TMPFS}\n{TMPFS_PROBE}").splitlines() == [
        "/tmp/filler held half",
        "/tmp/filler refused: No space left on device",
        "/dev/shm/filler held half",
        "/dev/shm/filler refused: No space left on device",
        "/dev/filler refused: Read-only file system",
    ]


ROOT_ONLY_PROBE = """
import os
for folder, folders, files in os.walk("/proc"):
    if folder == "/proc":  # the sandbox's own processes, and the kernel's settings (read-only, none a secret)
        folders[:] = [name for name in folders if not name.isdigit() and name not in ("self", "thread-self", "sys")]
    for name in files:
        path = os.path.join(folder, name)
        try:
            if os.stat(path).st_mode & 0o004 == 0:
                handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                if os.read(handle, 4096):  # a whole page: kpage* files read in 8-byte records
                    print(path)
                os.close(handle)
        except OSError:
            pass
"""


def test_what_only_root_may_read_in_proc_is_emptied(sandbox: Sandbox) -> None:
    """To /proc's permission checks a root worker's sandbox is the host's root: the host's timers named its processes
    and their pids, vmallocinfo gave the kernel's addresses, kpageflags every physical page's use (side channels)."""
    assert sandbox.python(ROOT_ONLY_PROBE) == ""
    assert sandbox.run("head -1 /proc/meminfo").stdout.startswith("MemTotal:")  # what all may read stays


SET_ID_PROBE = """
import ctypes, os, stat, struct
libc = ctypes.CDLL(None, use_errno=True)

def tried(name, call):
    try:
        call()
        print(name, "MADE")
    except OSError as exc:
        print(name, type(exc).__name__)

def raw(number, *args):
    if libc.syscall(number, *args) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

open("plain", "w").close()
fd = os.open("by-fd", os.O_CREAT | os.O_WRONLY, 0o755)
how = struct.pack("QQQ", os.O_CREAT | os.O_WRONLY, 0o4755, 0)  # openat2's open_how: flags, mode, resolve
for bit in (stat.S_ISUID, stat.S_ISGID):
    tried("chmod", lambda: os.chmod("plain", 0o755 | bit))
    tried("fchmod", lambda: os.fchmod(fd, 0o755 | bit))
    tried("open", lambda: os.close(os.open("opened-%o" % bit, os.O_CREAT | os.O_WRONLY, 0o755 | bit)))
    tried("mknod", lambda: os.mknod("made-%o" % bit, stat.S_IFREG | 0o755 | bit))
    tried("fchmodat2", lambda: raw(452, -100, b"plain", 0o755 | bit, 0))
tried("openat2", lambda: raw(437, -100, b"opened-2", how, len(how)))
os.chmod("plain", 0o755)  # what is not a set-id bit stays allowed
print("plain", oct(os.stat("plain").st_mode & 0o7777))
"""


def test_no_file_can_be_made_setuid_or_setgid(sandbox: Sandbox) -> None:
    """What a sandbox makes is its worker user's on the host (root's, for a root worker), where the checkout is not
    mounted nosuid: a copy of python made setuid in the checkout gave any host user who could reach it root."""
    if seccomp_problem() is not None:
        pytest.skip(f"no seccomp filter here: {seccomp_problem()}")
    sandbox.run(f"cp {PY} ./python && chmod u+s ./python; chmod g+s .")
    lines = sandbox.python(SET_ID_PROBE).splitlines()
    assert len(lines) == 12 and lines[-1] == "plain 0o755", lines
    assert not any(line.endswith("MADE") for line in lines), lines
    set_id = stat.S_ISUID | stat.S_ISGID
    made = [path for path in (sandbox.workdir, *sandbox.workdir.rglob("*")) if path.lstat().st_mode & set_id]
    assert made == [], made


FAMILIES_PROBE = """
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
for family, kind in [
    (socket.AF_VSOCK, socket.SOCK_STREAM), (socket.AF_VSOCK | 1 << 32, socket.SOCK_STREAM),
    (socket.AF_ALG, socket.SOCK_SEQPACKET), (socket.AF_PACKET, socket.SOCK_DGRAM), (socket.AF_KEY, socket.SOCK_RAW),
    (socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM),
    (socket.AF_NETLINK, socket.SOCK_DGRAM),
]:
    made = libc.syscall(SOCKET, ctypes.c_uint64(family), kind, 0)  # socket(2) itself, a family's higher bits as given
    print("made" if made >= 0 else ctypes.get_errno())
"""


def test_no_socket_of_a_family_the_network_namespace_may_not_hold(sandbox: Sandbox) -> None:
    """A network namespace does not hold AF_VSOCK before Linux 7.0 (nor a guest's virtio transport after it): a
    sandbox on a virtual machine reached its host's vsock services past its own network and the egress proxy."""
    if seccomp_problem() is not None:
        pytest.skip(f"no seccomp filter here: {seccomp_problem()}")
    call = {"x86_64": 41, "aarch64": 198}.get(platform.machine())
    if call is None:
        pytest.skip(f"socket(2)'s number on {platform.machine()} is not known here")
    lines = sandbox.python(f"SOCKET = {call}\n{FAMILIES_PROBE}").splitlines()
    assert lines == [str(errno.EAFNOSUPPORT)] * 5 + ["made"] * 4, lines
