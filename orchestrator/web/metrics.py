"""/metrics in Prometheus text format (0.0.4), written by hand from the database: no client library needed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from db import dashboard
from db.dashboard import DURATION_BOUNDS, Histogram
from db.lifecycle import TicketStatus
from orchestrator.fleetstatus import fleet_status
from orchestrator.web.auth import Principal, Role, require
from orchestrator.web.state import WebState, web_state

router = APIRouter(include_in_schema=False)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """A sample's value in full: an integer as one, a float to the last digit Python keeps (never `:g`'s six)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {number(value)}" if inner else f"{name} {number(value)}")
    return lines


def histogram(name: str, help_text: str, counted: Histogram, bounds: Sequence[float] = DURATION_BOUNDS) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound, at_most in zip(bounds, counted.at_most, strict=True):
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {at_most}')
    lines += [
        f'{name}_bucket{{le="+Inf"}} {counted.count}',
        f"{name}_sum {number(counted.total)}",
        f"{name}_count {counted.count}",
    ]
    return lines


def exposition(state: WebState) -> str:
    status = fleet_status(state.db, state.dispatcher)
    with state.db.session() as s:
        totals = dashboard.totals(s)
    tickets = {st.value: 0 for st in TicketStatus} | status["tickets"]
    queues = {q: d for q, d in status["queues"].items() if isinstance(d, int)}
    live = [w for w in status["workers"] if not w["stale"]]
    lines = family("fleet_tickets", "gauge", "Tickets by status.", (({"status": k}, v) for k, v in tickets.items()))
    lines += family(
        "fleet_attempts",
        "gauge",
        "Open attempts by status.",
        (({"status": k}, v) for k, v in status["attempts"].items()),
    )
    running = sum(v for k, v in status["attempts"].items() if k in ("running", "verifying"))
    lines += family("fleet_attempts_running", "gauge", "Attempts an agent or verifier holds now.", [({}, running)])
    lines += family(
        "fleet_queue_depth", "gauge", "Messages waiting per queue.", (({"queue": k}, v) for k, v in queues.items())
    )
    lines += family("fleet_workers", "gauge", "Workers with a fresh heartbeat.", [({"state": "live"}, len(live))])
    lines += family(
        "fleet_worker_slots",
        "gauge",
        "Slots of live workers.",
        [({"state": "busy"}, sum(w["busy"] for w in live)), ({"state": "total"}, sum(w["slots"] for w in live))],
    )
    lines += family(
        "fleet_verifications_total",
        "counter",
        "Verifications by verdict.",
        (({"verdict": k}, v) for k, v in totals.verdicts.items()),
    )
    lines += histogram("fleet_agent_duration_seconds", "Agent run time per attempt.", totals.agent_seconds)
    lines += histogram(
        "fleet_verification_duration_seconds", "Verification time per attempt.", totals.verification_seconds
    )
    lines += family(
        "fleet_cost_usd_total",
        "counter",
        "Agent spend metered by the model gateway (else reported by the agent), in US dollars.",
        [({}, totals.cost_usd)],
    )
    return "\n".join(lines) + "\n"


@router.get("/metrics")
def metrics(
    state: Annotated[WebState, Depends(web_state)], _: Annotated[Principal, Depends(require(Role.VIEWER))]
) -> PlainTextResponse:
    """Prometheus scrapes this with a viewer token (bearer_token in its scrape config)."""
    return PlainTextResponse(exposition(state), media_type=CONTENT_TYPE)
