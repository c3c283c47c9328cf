"""`fleet eval report`: pass@1 and unbiased pass@k per agent and model, cost and time per solved task, gamed
attempts by rule, errors by cause, and agreement with the SWE-bench harness's resolved/unresolved judgement.

pass@k is the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code":
for a task with n samples of which c passed, pass@k = 1 - C(n-c, k) / C(n, k), averaged over tasks. A sample
whose verification errored counts as not solved, as an instance whose evaluation errors is not resolved in the
reference harness; errors are reported apart, by cause.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

from db.lifecycle import RunStatus
from db.models import Attempt, EvalEntry, Evaluation

# Wrappers whose own reason is the cause: "the baseline run failed: X: details" is counted as "... failed: X".
WRAPPERS = ("the baseline run failed", "the tests could not run at the base commit")
STRICTER_GAMED = (
    "Fleet restores every test file and test setting the patch changed and refuses patches that game the run "
    "(test-aware code, a forged or cut-short report); the SWE-bench harness applies the test_patch on top of the "
    "patch and runs what is left, so it may count these resolved"
)
STRICTER_BROKEN = (
    "Fleet requires every test that passed at the base to keep passing; the task's PASS_TO_PASS leaves some of "
    "them out, so the reference harness would count this resolved"
)


@dataclass
class Outcome:
    """What one sample (one ticket) came to: its verdict, the evidence, what it cost and how long it took."""

    finished: bool
    verdict: str = ""  # passed, failed, gamed, error ("" while running)
    reason: str = ""
    cost_usd: float = 0.0
    seconds: float = 0.0
    tokens: int = 0
    fail_to_pass: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)


def entry_outcome(entry: EvalEntry) -> Outcome:
    """The sample's verdict: passed when any attempt passed, else its last attempt's."""
    runs = entry.ticket.runs
    attempts = [a for run in runs for a in run.attempts]
    finished = bool(runs) and all(run.status != RunStatus.ACTIVE.value for run in runs)
    outcome = Outcome(finished, cost_usd=sum(a.cost_usd for a in attempts))
    outcome.seconds = sum(_seconds(a) for a in attempts)
    outcome.tokens = sum(a.tokens_in + a.tokens_out for a in attempts)
    judged = [a for a in attempts if a.verification is not None]
    chosen = next((a for a in judged if a.verification and a.verification.verdict == "passed"), None)
    last = chosen or (attempts[-1] if attempts else None)
    if last is not None and last.verification is not None:
        v = last.verification
        outcome.verdict, outcome.reason = v.verdict, (v.reasons or [""])[0]
        outcome.fail_to_pass, outcome.broken = list(v.fail_to_pass), list(v.broken)
    elif last is not None and last.error:
        outcome.verdict, outcome.reason = "error", last.error
    elif finished:
        outcome.verdict, outcome.reason = "error", "the run ended without a verdict"
    return outcome


def _seconds(attempt: Attempt) -> float:
    if attempt.started_at is None or attempt.finished_at is None:
        return 0.0
    return max(0.0, (attempt.finished_at - attempt.started_at).total_seconds())


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator: the chance that at least one of k samples drawn from n (c correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks_for(n: int) -> list[int]:
    return sorted({k for k in (1, 2, 5, 10, 20, 50, 100) if k <= n} | {n})


def cause(reason: str) -> str:
    """A reason's kind: its first line up to the first colon (after a WRAPPERS prefix, the second), at most 100
    characters."""
    first = (reason.strip().splitlines() or ["unknown"])[0]
    parts = first.split(": ")
    kind = ": ".join(parts[:2]) if parts[0] in WRAPPERS and len(parts) > 2 else parts[0]
    return kind[:100] or "unknown"


def reference_resolved(entry: EvalEntry, outcome: Outcome) -> bool:
    """SWE-bench's judgement from Fleet's evidence: every FAIL_TO_PASS passes and no PASS_TO_PASS broke."""
    passes = set(outcome.fail_to_pass)
    return all(t in passes for t in entry.fail_to_pass) and not set(entry.pass_to_pass) & set(outcome.broken)


def agreement(entry: EvalEntry, outcome: Outcome) -> tuple[str, str]:
    """(agree | stricter | disagree | excluded, why) for one finished sample."""
    if outcome.verdict == "error" or not outcome.finished:
        return "excluded", "no verdict on the patch (an error or still running)"
    if outcome.verdict == "gamed":
        return "stricter", STRICTER_GAMED
    resolved = reference_resolved(entry, outcome)
    if (outcome.verdict == "passed") == resolved:
        return "agree", ""
    if resolved and outcome.broken:
        return "stricter", f"{STRICTER_BROKEN}: {', '.join(outcome.broken[:5])}"
    return "disagree", outcome.reason


def build_report(evaluation: Evaluation) -> dict[str, Any]:
    """The whole report as JSON-ready data: one row per agent and model, and the agreement summary."""
    groups: dict[tuple[str, str], list[tuple[EvalEntry, Outcome]]] = defaultdict(list)
    for entry in evaluation.entries:
        groups[(entry.agent, entry.model or "-")].append((entry, entry_outcome(entry)))
    rows = [_agent_row(agent, model, items) for (agent, model), items in sorted(groups.items())]
    agree: Counter[str] = Counter()
    stricter: list[dict[str, str]] = []
    for items in groups.values():
        for entry, outcome in items:
            kind, why = agreement(entry, outcome)
            agree[kind] += 1
            if kind in ("stricter", "disagree"):
                stricter.append({"task": entry.instance_id, "agent": entry.agent, "kind": kind, "why": why})
    return {
        "name": evaluation.name,
        "created_at": evaluation.created_at.isoformat(),
        "samples": evaluation.samples,
        "tasks": len({e.instance_id for e in evaluation.entries}),
        "agents": rows,
        "agreement": {"counts": dict(agree), "differences": stricter},
        "estimator": "pass@k = 1 - C(n-c, k) / C(n, k) per task, averaged (Chen et al. 2021)",
    }


def _agent_row(agent: str, model: str, items: Sequence[tuple[EvalEntry, Outcome]]) -> dict[str, Any]:
    finished = [(e, o) for e, o in items if o.finished]
    per_task: dict[str, list[bool]] = defaultdict(list)
    for entry, outcome in finished:
        per_task[entry.instance_id].append(outcome.verdict == "passed")
    n = min((len(v) for v in per_task.values()), default=0)
    solved = sum(1 for _, o in finished if o.verdict == "passed")
    cost = sum(o.cost_usd for _, o in finished)
    seconds = sum(o.seconds for _, o in finished)
    verdicts = Counter(o.verdict for _, o in finished)
    return {
        "agent": agent,
        "model": model,
        "samples": len(items),
        "finished": len(finished),
        "pending": len(items) - len(finished),
        "solved": solved,
        "tasks_solved": sum(1 for v in per_task.values() if any(v)),
        "tasks": len(per_task),
        "pass_at": {str(k): _mean_pass(per_task, k) for k in ks_for(n)} if n else {},
        "verdicts": dict(verdicts),
        "cost_usd": round(cost, 4),
        "cost_per_solved_usd": round(cost / solved, 4) if solved else None,
        "seconds_per_solved": round(seconds / solved, 2) if solved else None,
        "tokens": sum(o.tokens for _, o in finished),
        "gamed_by_rule": dict(Counter(cause(o.reason) for _, o in finished if o.verdict == "gamed")),
        "error_rate": round(verdicts["error"] / len(finished), 3) if finished else None,
        "errors_by_cause": dict(Counter(cause(o.reason) for _, o in finished if o.verdict == "error")),
    }


def _mean_pass(per_task: dict[str, list[bool]], k: int) -> float:
    """pass@k averaged over tasks, each task's estimate from its samples (n may differ while some still run)."""
    scores = [pass_at_k(len(v), sum(v), k) for v in per_task.values() if len(v) >= k]
    return round(sum(scores) / len(scores), 4) if scores else 0.0
