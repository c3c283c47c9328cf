"""The seccomp filter every sandboxed command runs under, compiled by libseccomp and handed to bwrap.

The list follows Flatpak's (`common/flatpak-run.c`, setup_seccomp) with what Codex CLI and Anthropic's
sandbox-runtime add (io_uring, ptrace, process_vm_*), plus bpf, which none of them refuse: the calls that
change mounts or namespaces, reach into other processes or the kernel's keyrings, load code into the kernel,
or inject keystrokes into a terminal; the making of a fifo; a set-user-ID or set-group-ID bit on a file; and a
socket of a family other than Flatpak's five, which fails with EAFNOSUPPORT as an unbuilt family would.
Everything else is allowed; a refused call fails with EPERM, and the new mount API, clone3 and openat2 fail with
ENOSYS, so libc falls back to calls the filter can inspect (clone's flags, open's mode; clone3 and openat2 pass
them in memory, where a filter cannot look). Syscalls of another ABI (i386 `int 0x80`) kill the process:
libseccomp's default for a foreign architecture.

libseccomp is called through ctypes: its own Python bindings ship only with Debian's system Python, and the
PyPI wrapper is unmaintained. The program is compiled once per worker process, in memory, and each sandbox gets it
through a pipe of its own (system/sandbox_start.py).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import socket
import stat

LIBRARY = "libseccomp.so.2"
ALLOW = 0x7FFF0000
CMP_EQ = 4
CMP_GE = 5
CMP_MASKED_EQ = 7
CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
# mknod's and mknodat's mode argument: a fifo is refused. The worker's git opens a checkout's `.gitignore` and
# `.gitattributes` after the sandbox, and opening a fifo waits for a writer (git's own timeout: 600 s); git tracks
# no fifo, so no diff needs one. Devices need a capability no sandbox has; sockets do not block an open.
MODE_ARGUMENT = {"mknod": 1, "mknodat": 2}
FILE_TYPE_BITS = 0o170000  # S_IFMT
# The mode argument of every call that sets a file's mode or creates one with a mode: a set-user-ID or set-group-ID bit
# is refused. What a sandbox makes is its worker user's on the host (root's, for a root worker), where the checkout's
# mount is not nosuid: a copy of python made setuid there ran as that user for any host user who could reach it.
# openat2, whose mode the filter cannot see, is UNIMPLEMENTED: glibc's open never uses it.
SET_ID_BITS = (stat.S_ISUID, stat.S_ISGID)
SET_MODE_ARGUMENT = {
    "chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "creat": 1, "open": 2, "openat": 3,
    "mknod": 1, "mknodat": 2,
}  # fmt: skip
# The socket families a sandbox may make (Flatpak's list). A network namespace does not hold every other one: AF_VSOCK
# is namespaced only from Linux 7.0, and a virtual machine's guest transport stays global even there, so a sandbox on a
# VM reached its host's vsock services past --unshare-net and the egress proxy; the rest (AF_ALG, AF_TIPC, AF_PACKET,
# ...) is kernel surface no command needs. Docker's default profile refuses AF_VSOCK too.
SOCKET_FAMILIES = (socket.AF_UNSPEC, socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)

REFUSED = (
    # mounts and namespaces: what the audit's escape used (umount, remount), and the ways around bwrap's view
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # the kernel's keyrings, programs, counters and modules
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    # io_uring runs syscalls the filter never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the host's clock, logs, accounting, swap and power
    "syslog", "uselib", "acct", "quotactl", "quotactl_fd", "swapon", "swapoff", "reboot",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # file handles bypass the mount view (the "shocker" container escape)
    "open_by_handle_at", "name_to_handle_at",
)  # fmt: skip
UNIMPLEMENTED = (
    "clone3", "openat2", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
)  # fmt: skip


class SeccompUnavailable(Exception):
    """libseccomp is not installed or could not compile the filter."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@functools.cache
def _library() -> ctypes.CDLL:
    try:  # by its soname, the ABI written for here: the loader finds it (ctypes.util's search runs `ldconfig -p`)
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp is not installed ({exc})") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _add(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: _ArgCmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return  # not a syscall on this architecture
    array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
    failed = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    if failed:
        raise SeccompUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-failed)}")


def _rules(lib: ctypes.CDLL, ctx: int) -> None:
    refused = _errno_action(errno.EPERM)
    for name in REFUSED:
        _add(lib, ctx, refused, name)
    for name in UNIMPLEMENTED:
        _add(lib, ctx, _errno_action(errno.ENOSYS), name)
    _add(lib, ctx, refused, "clone", _ArgCmp(0, CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    for request in (TIOCSTI, TIOCLINUX):
        _add(lib, ctx, refused, "ioctl", _ArgCmp(1, CMP_MASKED_EQ, 0xFFFFFFFF, request))
    for name, argument in MODE_ARGUMENT.items():
        _add(lib, ctx, refused, name, _ArgCmp(argument, CMP_MASKED_EQ, FILE_TYPE_BITS, stat.S_IFIFO))
    for name, argument in SET_MODE_ARGUMENT.items():
        for bit in SET_ID_BITS:
            _add(lib, ctx, refused, name, _ArgCmp(argument, CMP_MASKED_EQ, bit, bit))
    unbuilt, last = _errno_action(errno.EAFNOSUPPORT), max(SOCKET_FAMILIES)
    for family in sorted(set(range(last)) - set(SOCKET_FAMILIES)):
        _add(lib, ctx, unbuilt, "socket", _ArgCmp(0, CMP_EQ, family, 0))
    _add(lib, ctx, unbuilt, "socket", _ArgCmp(0, CMP_GE, last + 1, 0))  # a family with any higher bit set too


def compile_filter() -> bytes:
    """The BPF program bwrap's `--seccomp FD` reads, compiled in memory."""
    lib = _library()
    ctx = lib.seccomp_init(ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        _rules(lib, ctx)
        with os.fdopen(os.memfd_create("fleet-seccomp", os.MFD_CLOEXEC), "w+b") as handle:
            failed = lib.seccomp_export_bpf(ctx, handle.fileno())
            if failed:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-failed)}")
            handle.seek(0)
            return handle.read()
    finally:
        lib.seccomp_release(ctx)


@functools.cache
def filter_program() -> bytes:
    """This process's compiled filter, compiled once."""
    return compile_filter()
