"""The limits a command starts under: lowered to Fleet's limits, never raised, never above the hard limit; the soft
one alone, but for HARD_KINDS."""

from __future__ import annotations

import resource

_commands_descriptors = resource.RLIM_INFINITY  # no limit of Fleet's: commands inherit the process's own
# The largest file an agent, a setup or a test run may write (FLEET_MAX_FILE_MB): a test database, or a wheel (a
# CUDA build of torch is 2.5 GB) fits; a file grown sparse to 64 GiB for the worker to read does not (`truncate` past
# it fails: EFBIG, or SIGXFSZ). Fleet's own processes (the worker, its git in the mirror) are not under it.
DEFAULT_FILE_SIZE = 4 * 2**30
_commands_file_size = DEFAULT_FILE_SIZE
# Limits a command must not raise back: its hard limit is lowered with the soft one.
HARD_KINDS = frozenset({resource.RLIMIT_FSIZE})


def capped(limit: int, hard: int) -> int:
    """limit, or the hard limit when that is lower (a soft limit cannot exceed it)."""
    return limit if hard == resource.RLIM_INFINITY else min(limit, hard)


def lowered(current: tuple[int, int], limit: int) -> int | None:
    """The soft limit to set so that it is at most limit, or None when the current (soft, hard) one already is.

    A limit of RLIM_INFINITY is no limit of Fleet's: the inherited one stands."""
    soft, hard = current
    if limit == resource.RLIM_INFINITY:
        return None
    new = capped(limit, hard)
    return new if soft == resource.RLIM_INFINITY or soft > new else None


def limited(kind: int, current: tuple[int, int], limit: int) -> tuple[int, int] | None:
    """The (soft, hard) limits of kind to set so that the soft one is at most limit (and the hard one too, for
    HARD_KINDS), or None when the current ones already are."""
    soft = lowered(current, limit)
    if kind not in HARD_KINDS or limit == resource.RLIM_INFINITY:
        return None if soft is None else (soft, current[1])
    new = capped(limit, current[1])
    return None if current == (new, new) else (new, new)


def limit_commands_files(size: int) -> None:
    """Set the largest file the commands this process starts may write (0: no limit of Fleet's)."""
    global _commands_file_size
    _commands_file_size = size if size > 0 else resource.RLIM_INFINITY


def commands_file_size() -> int:
    """The largest file a command this process starts may write (RLIMIT_FSIZE), RLIM_INFINITY for none."""
    return _commands_file_size


def more_descriptors() -> None:
    """Raise this process's soft limit of open descriptors to its hard limit, as Go's runtime does: a worker holds
    several per running command (its output pipe, pidfd, cancel flag, sandbox start), and a soft limit of 1,024
    is a few hundred slots. The commands it starts get the soft limit it had before (commands_descriptors())."""
    global _commands_descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = capped(2**20, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):  # above the kernel's fs.nr_open: the limit stays as it is
            return
        _commands_descriptors = soft


def commands_descriptors() -> int:
    """The soft limit of open descriptors a command starts under: the process's own before more_descriptors()."""
    return _commands_descriptors
