"""A finished agent run's outcome, as the outcome journal keeps it and as the attempt's columns store it."""

from __future__ import annotations

from typing import Any

from db import queries
from db.models import Attempt, utcnow
from workers.agents.contracts import AgentResult

# The agent's result, its diff, the prompt it read, which run it was, and the gateway's metering columns.
Outcome = tuple[AgentResult, str, str, int, dict[str, Any]]


RESULT_FIELDS = ("exit_code", "transcript", "duration", "error", "tokens_in", "tokens_out", "cost_usd")


def kept_outcome(result: AgentResult, diff: str, prompt: str, run: int, metering: dict[str, Any]) -> dict[str, Any]:
    """The outcome as the journal keeps it (JSON), with the agent start it came from."""
    return {name: getattr(result, name) for name in RESULT_FIELDS} | {
        "diff": diff,
        "prompt": prompt,
        "run": run,
        "metering": metering,
    }


def from_kept(kept: dict[str, Any]) -> Outcome:
    """The outcome back from the journal's (or the attempt row's) dict."""
    fields = {key: value for key, value in kept.items() if key not in ("diff", "prompt", "run", "metering")}
    metering = dict(kept.get("metering") or {})
    return AgentResult(**fields), str(kept["diff"]), str(kept["prompt"]), int(kept.get("run", 0)), metering


def diff_stat(diff: str) -> str:
    files = added = removed = 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            files += 1
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"{files} file{'s' if files != 1 else ''}, +{added} -{removed}"


def columns_of(result: AgentResult, diff: str, prompt: str, metering: dict[str, Any]) -> dict[str, Any]:
    """The attempt's columns for a finished agent run (with the gateway's: what the CLI reported, unpriced calls)."""
    return dict(
        metering,
        prompt=prompt,  # the context pack the agent read, in place of the ticket's text it was built from
        transcript=result.transcript,
        diff=diff,
        diff_stat=diff_stat(diff),
        exit_code=result.exit_code,
        error=result.error,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost_usd=result.cost_usd,
        agent_finished_at=utcnow(),
    )


def store_kept(s: queries.Session, attempt_id: int, kept: dict[str, Any]) -> bool:
    """Write a journaled outcome onto its attempt's row, for whichever worker takes the attempt next."""
    result, diff, prompt, run, metering = from_kept(kept)
    return queries.keep_agent_outcome(s, attempt_id, run, **columns_of(result, diff, prompt, metering))


def row_outcome(attempt: Attempt) -> dict[str, Any]:
    """The finished agent's outcome as the attempt's row stores it, in the journal's shape."""
    fields = {name: getattr(attempt, name) for name in RESULT_FIELDS if name != "duration"}
    return fields | {"duration": 0.0, "diff": attempt.diff, "prompt": attempt.prompt, "run": attempt.agent_runs}
