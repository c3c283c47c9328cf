"""One rule for an agent CLI's own usage report against the gateway's, read without SQLAlchemy (views, fleet show)."""

from __future__ import annotations

MISMATCH = 0.01  # a CLI's own report differing from the gateway's by more than this is shown


def reported_differs(reported: float, metered: float) -> bool:
    """A CLI's own figure is more than 1% away from the gateway's (both planes show the difference)."""
    return abs(reported - metered) > MISMATCH * max(abs(metered), 1e-12)
