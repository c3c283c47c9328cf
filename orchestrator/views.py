"""Plain dicts of tickets, attempts and verifications: what `--json` prints and the API returns.

They render the ORM's objects and the reading commands' plain rows (db/reads.py) alike: the rows carry the models'
attribute names, and this module imports neither, so `fleet tickets` and `fleet show` load no SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from db.usage import reported_differs
from system.credentials import shown_url
from verification.phrases import ALSO_FIXED, KNOWN_FAILING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from db.models import Attempt, ModelCall, Repo, Review, Ticket, Verification, Worker
    from db.reads import AttemptRow, TicketRow, VerificationRow, WorkerRow
    from orchestrator.dispatch import QueueDepths

STALE_AFTER = timedelta(seconds=60)  # a worker without a heartbeat for this long is shown as stale


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def plural(count: int, word: str) -> str:
    """'1 test', '2 tests': counts as people write them."""
    return f"{count} {word}{'' if count == 1 else 's'}"


HIDDEN = "[hidden: only an admin sees it]"
CREDENTIAL_SETTINGS = ("notify_url",)  # a webhook's URL is its own credential (Slack's is)


def repo_view(repo: Repo, credentials: bool = True) -> dict[str, Any]:
    """The repository as the API and `fleet repo list --json` show it; without credentials, the settings that
    are one (CREDENTIAL_SETTINGS) are shown as HIDDEN. A password in a URL (its source or its remote, as an older
    Fleet stored them) is shown as ***: the workers read the stored row, never this view."""
    settings = {name: shown_url(v) if isinstance(v, str) else v for name, v in (repo.settings or {}).items()}
    if not credentials:
        settings |= {name: HIDDEN for name in CREDENTIAL_SETTINGS if settings.get(name)}
    return {
        "id": repo.id,
        "name": repo.name,
        "source": shown_url(repo.source),
        "test_cmd": repo.test_cmd,
        "setup_cmd": repo.setup_cmd,
        "default_agent": repo.default_agent,
        "settings": settings,
    }


def landed(approved: Review, repo: Repo) -> tuple[str, str, str]:
    """Where an approved diff landed, as the ticket page says it: its branch, its commit and the repository (a
    password an older Fleet stored in its URL shown as ***)."""
    return approved.branch or "", (approved.commit_sha or "")[:12], shown_url(repo.source)


def verification_view(v: Verification | VerificationRow | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "verdict": v.verdict,
        "reasons": v.reasons,
        "fail_to_pass": v.fail_to_pass,
        "pass_to_pass": v.pass_to_pass,
        "broken": v.broken,
        "flaky": v.flaky,
        "flags": v.flags,
        "reverted": v.reverted,
        "warnings": v.warnings,
        "known_failing": known_failing(v.warnings),
        "fixed": fixed_tests(v.fail_to_pass, v.warnings),
        "duration": round(v.duration, 3),
    }


def known_failing(warnings: list[str]) -> list[str]:
    """The known failures a verification listed (failing before and after, not part of the ticket)."""
    return _listed(KNOWN_FAILING, warnings)


def fixed_tests(fail_to_pass: list[str], warnings: list[str]) -> list[dict[str, Any]]:
    """Every test that went from failing at the base to passing with the diff, each marked target or not."""
    beyond = set(_listed(ALSO_FIXED, warnings))
    return [{"test": t, "target": t not in beyond} for t in fail_to_pass]


def _listed(phrase: str, warnings: list[str]) -> list[str]:
    prefix = phrase + ": "
    return [t for w in warnings if w.startswith(prefix) for t in w.removeprefix(prefix).split(", ")]


def attempt_view(a: Attempt | AttemptRow) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": a.id,
        "run": a.run.number,
        "number": a.number,
        "status": a.status,
        "diff_stat": a.diff_stat,
        "exit_code": a.exit_code,
        "error": a.error,
        "agent_runs": a.agent_runs,
        "recoveries": a.recoveries,
        "verdict": a.verification.verdict if a.verification else None,
        "verification": verification_view(a.verification),
        "feedback_in": a.feedback_in,
        "feedback_out": a.verification.feedback if a.verification else "",
        "tokens_in": a.tokens_in,
        "tokens_out": a.tokens_out,
        "cost_usd": a.cost_usd,
        "unpriced_calls": a.unpriced_calls,
        "reported": {
            "tokens_in": a.reported_tokens_in,
            "tokens_out": a.reported_tokens_out,
            "cost_usd": a.reported_cost_usd,
        },
        "usage_mismatch": usage_mismatch(a),
        "usage": usage(a),
        "started_at": _time(a.started_at),
        "finished_at": _time(a.finished_at),
    }
    return view


def attempt_texts(a: Attempt) -> dict[str, str]:
    """An attempt's diff, transcript and prompt: what the review and the attempt's own page add to attempt_view."""
    return {"diff": a.diff, "transcript": a.transcript, "prompt": a.prompt}


def usage(a: Attempt | AttemptRow) -> str:
    """The attempt's billed usage in a few words: tokens, cost or "unpriced", and a CLI report 1% or more away."""
    cost = f"${a.cost_usd:.4f}" + (f" + {a.unpriced_calls} unpriced call(s)" if a.unpriced_calls else "")
    text = f"{a.tokens_in} in / {a.tokens_out} out tokens, {cost}"
    if mismatch := usage_mismatch(a):
        text += f" (the agent reported {mismatch})"
    return text


def usage_mismatch(a: Attempt | AttemptRow) -> str | None:
    """What the agent reported about itself, when it differs from the gateway's figures by more than 1%."""
    pairs = (
        (a.reported_tokens_in, a.tokens_in),
        (a.reported_tokens_out, a.tokens_out),
        (a.reported_cost_usd, a.cost_usd),
    )
    if not any(theirs and reported_differs(theirs, ours) for theirs, ours in pairs):
        return None
    return f"{a.reported_tokens_in or 0} in / {a.reported_tokens_out or 0} out, ${a.reported_cost_usd or 0:.4f}"


def conversation(calls: Iterable[ModelCall]) -> str:
    """The model calls the gateway metered, request and answer, as stored (keys redacted, long bodies shortened)."""
    parts = []
    for c in calls:
        cost = "unpriced" if c.cost_usd is None else f"${c.cost_usd:.6f}"
        head = f"# call {c.seq}: {c.protocol}{' stream' if c.streamed else ''} {c.model} HTTP {c.status}"
        head += f", {c.input_tokens} in ({c.cached_tokens} cached) / {c.output_tokens} out, {cost}, {c.duration:.1f}s"
        parts.append(f"{head}{f' - {c.error}' if c.error else ''}\n> {c.request}\n< {c.response}\n")
    return "\n".join(parts)


def final_verdict(t: Ticket | TicketRow) -> str | None:
    """Why a failed ticket failed, when that is more than `failed`: `gamed` if a run's last diff gamed the tests."""
    last = [r.attempts[-1].verification for r in t.runs if r.attempts and r.attempts[-1].verification]
    verdicts = {v.verdict for v in last if v is not None}
    if t.status == "failed" and "gamed" in verdicts:
        return "gamed"
    return None


def ticket_view(t: Ticket | TicketRow, with_runs: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": t.id,
        "repo": t.repo.name,
        "title": t.title,
        "status": t.status,
        "reason": t.status_reason,
        "base_ref": t.base_ref,
        "base_sha": t.base_sha,
        "agent": t.agent,
        "priority": t.priority,
        "attempt_budget": t.attempt_budget,
        "fanout": t.fanout,
        "targets": t.targets,
        "created_at": _time(t.created_at),
        "updated_at": _time(t.updated_at),
        "cancelled_by": t.cancelled_by,
        "pr_url": t.pr_url or "",
        "issue": t.issue_number,
    }
    if with_runs:
        view["verdict"] = final_verdict(t)
        view["body"] = t.body
        view["runs"] = [
            {
                "number": r.number,
                "agent": r.agent,
                "status": r.status,
                "attempt_limit": r.attempt_limit,
                "attempts": [attempt_view(a) for a in r.attempts],
            }
            for r in t.runs
        ]
    return view


def worker_view(w: Worker | WorkerRow) -> dict[str, Any]:
    return {
        "id": w.id,
        "hostname": w.hostname,
        "pid": w.pid,
        "slots": w.slots,
        "busy": w.busy,
        "queues": w.queues,
        "heartbeat_at": _time(w.heartbeat_at),
        "stopped_at": _time(w.stopped_at),
    }


def fleet_figures(
    tickets: dict[str, int],
    attempts: dict[str, int],
    workers: Sequence[Worker | WorkerRow],
    dispatcher: QueueDepths | None,
) -> dict[str, Any]:
    """`fleet status` and the web page's figures, from the counts and the live workers (ORM objects or rows)."""
    now = datetime.now(UTC)
    shown = [worker_view(w) | {"stale": now - w.heartbeat_at > STALE_AFTER} for w in workers]
    data: dict[str, Any] = {"tickets": tickets, "attempts": attempts, "workers": shown}
    try:
        data["queues"] = dispatcher.queue_depths() if dispatcher else {}
    except Exception as exc:  # the broker may be down; the database still answers
        data["queues"] = {"error": str(exc)}
    return data
