"""Folders on disk: how much they hold, and removing them even when an agent left them read-only."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path


def walk(root: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(root) top-down, never into a link: (folder, its folders, its other entries), where the caller may
    remove folders from the list to skip them. Not recursive, where os.walk is until Python 3.12: a tree a thousand
    folders deep, which code under test can leave, would end it with RecursionError."""
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        except OSError:
            continue
        dirs = [name for name, is_dir in listed if is_dir]
        yield folder, dirs, [name for name, is_dir in listed if not is_dir]
        stack += [os.path.join(folder, name) for name in reversed(dirs)]


def disk_usage(root: Path) -> int:
    """Bytes on disk used by the files under root."""
    total = 0
    for folder, _dirs, files in walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def memory_holding(data: bytes, made: list[int]) -> int:
    """A memory file's descriptor, holding data and read from its start (a command's stdin, output or errors,
    with no pipe to pump); added to made, for the caller to close."""
    fd = os.memfd_create("fleet", os.MFD_CLOEXEC)
    made.append(fd)
    view, written = memoryview(data), 0
    while written < len(data):
        written += os.write(fd, view[written:])
    if written:
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


# What a write into a capped memory file can stop short of its end by: the kernel refuses a write past the end a
# page (or a huge page, 2 MiB) at a time. A cap this far past a limit tells "over the limit" from any failed write.
WRITE_MARGIN = 4 * 2**20
READ_BYTES = 2**30  # one pread at most: Linux cuts a read at 2 GiB - 4 KiB (MAX_RW_COUNT)


def memory_capped(limit: int, made: list[int]) -> int:
    """An empty memory file a command writes its output into, that takes limit + WRITE_MARGIN bytes at most: it is
    sealed against growing, so a write past that fails (EPERM) and the command stops there. What was written ends
    at its offset, which the command shares (memory_written); added to made, for the caller to close."""
    fd = os.memfd_create("fleet", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    made.append(fd)
    os.ftruncate(fd, limit + WRITE_MARGIN)  # no memory until written
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd


def memory_written(fd: int) -> int:
    """How far a command wrote into a memory file it was given as its output (the offset it shares with fd)."""
    return os.lseek(fd, 0, os.SEEK_CUR)


def memory_contents(fd: int, size: int | None = None) -> bytes:
    """The first size bytes of a memory file (default: all it holds), whatever position the process that wrote it
    left."""
    size = os.fstat(fd).st_size if size is None else size
    parts: list[bytes] = []
    read = 0
    while read < size and (chunk := os.pread(fd, min(size - read, READ_BYTES), read)):
        parts.append(chunk)
        read += len(chunk)
    return b"".join(parts)


def write_over(path: Path, data: bytes) -> None:
    """Write data over the file at path from its start and cut it to that length, made only when missing; a link
    there is refused (ELOOP), never followed, and so is a fifo or a device (never waited on). Where a worker writes
    the same files again, this makes no file and frees no block: on ext4 without a journal either costs tens of
    times the write (bench/file_churn.py)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        written = 0
        while written < len(data):
            written += os.pwrite(handle, data[written:], written)
        if os.fstat(handle).st_size > len(data):
            os.ftruncate(handle, len(data))
    finally:
        os.close(handle)


def link_on_the_way(root: Path, relative: str) -> Path | None:
    """The first of the folders between root and root/relative that is a link (code that ran in root may have
    pointed it anywhere on the host) or no folder at all (then nothing is there), if any."""
    folder = root
    for part in Path(relative).parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            return folder
    return None


def copy_into(root: Path, relative: str, source: Path) -> None:
    """Copy the file source to root/relative, never through a link: what ran in root may have planted one on the
    way or at the target (each is removed, and real folders made in its place)."""
    if (on_the_way := link_on_the_way(root, relative)) is not None:
        on_the_way.unlink()  # nothing past it is there: the folders below are made anew
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_tree(target)  # whatever is there (a link, a fifo, a hard link to another name) goes, never written into
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with source.open("rb") as reading, os.fdopen(os.open(target, flags, 0o644), "wb") as writing:
        shutil.copyfileobj(reading, writing)


def read_regular(path: Path, limit: int) -> bytes | None:
    """At most limit bytes of the regular file at path, or None for anything else (a link, a fifo, a device,
    nothing): what code that ran where path is may have left there is never followed, waited on or read unbounded."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(handle).st_mode):  # a folder among them: fdopen would refuse it
        os.close(handle)
        return None
    with os.fdopen(handle, "rb") as reading:
        return reading.read(limit)


def read_within(root: Path, relative: str, limit: int) -> bytes | None:
    """read_regular() of root/relative, or None when relative leads out of root (absolute, `..`) or a folder on the
    way is a link: code that ran in root may have pointed one anywhere on the host."""
    if Path(relative).is_absolute() or ".." in Path(relative).parts or link_on_the_way(root, relative) is not None:
        return None
    return read_regular(root / relative, limit)


def remove_tree(path: Path) -> None:
    """Delete path (file, link or folder; missing is fine) even when an agent left read-only folders in it, or folders
    nested deeper than Python's recursion or PATH_MAX allow."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)
    except (OSError, RecursionError):  # rmtree recurses: a tree a thousand folders deep ends it on Python 3.11
        if os.path.lexists(path):  # else deleted meanwhile
            _remove_by_handles(path)


def _remove_by_handles(path: Path) -> None:
    """`chmod -R u+rwx` (for a worker that is not root, whom modes bind), then `rm -rf`: both walk a tree of any depth
    through folder handles, never through a link within it."""
    commands = [["rm", "-rf", "--one-file-system", "--"]]
    if os.geteuid() != 0:
        commands.insert(0, ["chmod", "-R", "u+rwx", "--"])
    for argv in commands:
        program = required_program(argv[0], os.defpath)
        try:
            subprocess.run(
                [program, *argv[1:], os.fspath(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600
            )
        except subprocess.TimeoutExpired:
            raise OSError(errno.ETIMEDOUT, f"{argv[0]} did not finish in 600 s", os.fspath(path)) from None
    if os.path.lexists(path):
        raise OSError(errno.ENOTEMPTY, "could not be removed", os.fspath(path))


def program_on(name: str, search_path: str | None) -> str | None:
    """The absolute path of the program called name (no slash) on search_path (a PATH; None: the worker's), or None.

    Only the PATH's absolute folders are searched: a relative one would name a program in whatever folder a command
    runs in, a checkout's among them. A program found is remembered and checked with one stat at the next call (a
    worker runs a dozen commands per ticket); one moved or removed is looked up again, and a miss is never kept."""
    if "/" in name:
        raise ValueError(f"a program name, not a path: {name!r}")
    search_path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    key = (name, search_path)
    found = _found.get(key)
    if found is not None and os.path.isfile(found) and os.access(found, os.X_OK):
        return found
    folders = [folder for folder in search_path.split(os.pathsep) if os.path.isabs(folder)]
    found = shutil.which(name, path=os.pathsep.join(folders)) if folders else None
    if found is None:
        _found.pop(key, None)
    else:
        _found[key] = found
    return found


_found: dict[tuple[str, str], str] = {}  # (name, PATH): the program found there


def required_program(name: str, search_path: str | None) -> str:
    """program_on(), for a program a command cannot go without: FileNotFoundError naming it when it is missing,
    never a bare name that a relative PATH folder (a checkout's) would answer."""
    program = program_on(name, search_path)
    if program is None:
        raise FileNotFoundError(f"{name} is not in any absolute folder of the PATH")
    return program
