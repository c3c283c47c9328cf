"""The soft limits a command starts under: lowered to Fleet's limits, never raised, never above the hard limit."""

from __future__ import annotations

import resource


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
