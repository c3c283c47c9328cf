"""`fleet export`: what Fleet learned, as training data with a reward nobody can hack.

trajectories: one record per finished attempt (prompt = the context pack, the conversation, the diff, the
verdict as reward: passed 1, failed 0, gamed flagged apart; attempts that errored are left out: the environment,
not the agent, decided them). sft: OpenAI chat fine-tuning examples from verified attempts only. preference:
OpenAI preference pairs from one ticket's fan-out, a verified diff against a failed or gamed one; an attempt a
reviewer rejected is never the chosen side. Every text goes through the caller's redaction; repositories whose
settings say `export = false` give nothing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from db import queries
from db.engine import Database
from db.models import Attempt, Review, utcnow
from db.specs import RepoSettings
from orchestrator.errors import FleetError

Redact = Callable[[str], str]
WINDOW = re.compile(r"^(\d{1,6})([hdw])$")
HOURS = {"h": 1, "d": 24, "w": 24 * 7}
SYSTEM = "You are a coding agent. Fix the issue in the repository; answer with a unified diff."
MAX_PAIRS_PER_TICKET = 16


def window(text: str) -> timedelta:
    """`7d`, `12h`, `2w` as a timedelta; one error line otherwise."""
    match = WINDOW.match(text.strip())
    if not match:
        raise FleetError(f"--since {text!r}: give a number and h, d or w (7d, 12h, 2w)")
    return timedelta(hours=int(match.group(1)) * HOURS[match.group(2)])


@dataclass(frozen=True)
class Filters:
    """Which repositories' attempts to export (export = false always excludes)."""

    repos: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def allows(self, name: str, settings: dict[str, Any]) -> bool:
        if not RepoSettings.from_stored(settings).export:
            return False
        return (not self.repos or name in self.repos) and name not in self.exclude


def gateway_conversation(s: queries.Session, attempt: Attempt) -> list[dict[str, str]] | None:
    """The attempt's model conversation as the metering gateway stored it: the last OpenAI chat call's messages and
    its answer (JSON or streamed). None when the agent spoke another protocol or made no call through the gateway:
    the transcript stands in then."""
    calls = [c for c in queries.model_calls(s, attempt.id) if c.protocol == "openai-chat" and c.status == 200]
    if not calls:
        return None
    last = calls[-1]
    try:
        request = json.loads(last.request)
    except ValueError:
        return None
    messages = [
        {"role": str(m.get("role", "")), "content": m["content"]}
        for m in request.get("messages", [])
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]
    answer = _chat_answer(last.response)
    return messages + [{"role": "assistant", "content": answer}] if messages and answer else None


def _chat_answer(response: str) -> str:
    """The assistant's text in a chat completion: one JSON body, or the content deltas of an SSE stream."""
    try:
        return str(json.loads(response)["choices"][0]["message"]["content"] or "")
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    parts = []
    for line in response.splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            choices = json.loads(line[5:]).get("choices") or []
        except ValueError:
            continue
        parts += [str(c.get("delta", {}).get("content") or "") for c in choices if isinstance(c, dict)]
    return "".join(parts)


def conversation(s: queries.Session, attempt: Attempt) -> tuple[list[dict[str, str]], str]:
    """(messages, source): the gateway's conversation when present, else the prompt and the agent's transcript."""
    found = gateway_conversation(s, attempt)
    if found:
        return found, "gateway"
    return [{"role": "user", "content": attempt.prompt}, {"role": "assistant", "content": attempt.transcript}], (
        "transcript"
    )


def _model(attempt: Attempt) -> str:
    return str(attempt.run.ticket.agent_options.get("model") or "")


def trajectory(s: queries.Session, attempt: Attempt, reviews: Sequence[Review], redact: Redact) -> dict[str, Any]:
    v = attempt.verification
    assert v is not None
    messages, source = conversation(s, attempt)
    return {
        "id": attempt.id,
        "ticket_id": attempt.ticket_id,
        "run": attempt.run.number,
        "attempt": attempt.number,
        "repo": attempt.run.ticket.repo.name,
        "agent": attempt.run.agent,
        "model": _model(attempt),
        "prompt": redact(attempt.prompt),
        "messages": [{"role": m["role"], "content": redact(m["content"])} for m in messages],
        "conversation_source": source,
        "transcript": redact(attempt.transcript),
        "diff": redact(attempt.diff),
        "verdict": v.verdict,
        "reward": 1 if v.verdict == "passed" else 0,
        "gamed": v.verdict == "gamed",
        "feedback_in": redact(attempt.feedback_in),
        "feedback_out": redact(v.feedback),
        "reviews": [{"decision": r.decision, "feedback": redact(r.feedback)} for r in reviews],
        "cost_usd": attempt.cost_usd,
        "tokens_in": attempt.tokens_in,
        "tokens_out": attempt.tokens_out,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else "",
    }


def _answer(diff: str) -> str:
    return f"```diff\n{diff}```" if diff.endswith("\n") else f"```diff\n{diff}\n```"


def sft(record: dict[str, Any]) -> dict[str, Any]:
    """A verified attempt as chat messages: the gateway's conversation, else the pack and the verified diff."""
    if record["conversation_source"] == "gateway":
        return {"messages": record["messages"]}
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": _answer(record["diff"])},
        ]
    }


def preferences(records: Sequence[dict[str, Any]], rejected_by_reviewer: set[int]) -> Iterator[dict[str, Any]]:
    """Pairs from one ticket's attempts: a verified diff no reviewer rejected over a failed or gamed one."""
    by_ticket: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_ticket[record["ticket_id"]].append(record)
    for ticket_id, items in sorted(by_ticket.items()):
        chosen = [r for r in items if r["verdict"] == "passed" and r["id"] not in rejected_by_reviewer and r["diff"]]
        worse = [r for r in items if r["verdict"] in ("failed", "gamed") and r["diff"]]
        pairs = [(good, bad) for good in chosen for bad in worse if good["diff"] != bad["diff"]]
        for good, bad in pairs[:MAX_PAIRS_PER_TICKET]:
            yield {
                "input": {
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": good["prompt"]}]
                },
                "preferred_output": [{"role": "assistant", "content": _answer(good["diff"])}],
                "non_preferred_output": [{"role": "assistant", "content": _answer(bad["diff"])}],
                "metadata": {
                    "ticket_id": ticket_id,
                    "repo": good["repo"],
                    "chosen_attempt": good["id"],
                    "rejected_attempt": bad["id"],
                    "rejected_verdict": bad["verdict"],
                },
            }


def export_records(db: Database, fmt: str, since: timedelta, filters: Filters, redact: Redact) -> list[dict[str, Any]]:
    """The records of one format for the attempts finished in the window."""
    with db.session() as s:
        attempts = [
            a
            for a in queries.finished_attempts(s, utcnow() - since)
            if a.verification is not None
            and a.verification.verdict != "error"
            and filters.allows(a.run.ticket.repo.name, a.run.ticket.repo.settings)
        ]
        reviews = queries.attempt_reviews(s, [a.id for a in attempts])
        records = [trajectory(s, a, reviews.get(a.id, []), redact) for a in attempts]
    rejected = {i for i, given in reviews.items() if any(r.decision == "rejected" for r in given)}
    if fmt == "trajectories":
        return records
    if fmt == "sft":
        return [sft(r) for r in records if r["verdict"] == "passed" and r["id"] not in rejected]
    if fmt == "preference":
        return list(preferences(records, rejected))
    raise FleetError(f"--format {fmt!r}: must be one of trajectories, sft, preference")
