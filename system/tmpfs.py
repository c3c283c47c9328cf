"""The memory a sandbox's own folders may hold. Its `/tmp`, its `/dev` and its covers are tmpfs, whose pages no
address-space limit counts: without a memory cgroup (test runs and setups always, agents where cgroups are not
writable) one sandbox could fill the host's memory there. `/tmp` and `/dev/shm` are sized (FLEET_SANDBOX_TMP_MB),
`/dev` is made read-only once `/dev/shm` is mounted on it, and a cover holds a few pages at most. None of them is
where a command keeps its work: TMPDIR and HOME are the attempt's folders on disk."""

from __future__ import annotations

DEFAULT_TMPFS = 2**30
COVER_BYTES = 64 * 2**10  # the folders bwrap makes in a cover for what is bound inside it take none of it
_tmpfs_bytes = DEFAULT_TMPFS


def limit_sandbox_tmpfs(size: int) -> None:
    """Set what each sandbox's `/tmp`, and its `/dev/shm`, may hold (FLEET_SANDBOX_TMP_MB)."""
    global _tmpfs_bytes
    _tmpfs_bytes = size


def sandbox_tmpfs_bytes() -> int:
    return _tmpfs_bytes


def private_folders(size: int) -> list[str]:
    """bwrap's arguments for a sandbox's own `/dev` and `/tmp`, each tmpfs holding at most size bytes."""
    return [
        *("--dev", "/dev", "--size", str(size), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"),
        *("--size", str(size), "--tmpfs", "/tmp"),
    ]


def cover_folder(path: str) -> list[str]:
    """bwrap's arguments that cover the folder at path with an empty tmpfs that holds next to nothing."""
    return ["--size", str(COVER_BYTES), "--tmpfs", path]
