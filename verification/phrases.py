"""Phrases verification writes into stored verdicts that the views read back (imported without the test runner)."""

from __future__ import annotations

KNOWN_FAILING = "known failing (failing before and after, not part of this ticket)"
ALSO_FIXED = "also fixed (failing at the base, passing with the diff, not a target of this ticket)"
