"""The soft limits a command starts under: lowered to Fleet's limits, never raised, never above the hard limit."""

from __future__ import annotations

import resource

_commands_descriptors = resource.RLIM_INFINITY  # no limit of Fleet's: commands inherit the process's own


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
