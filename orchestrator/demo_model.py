"""The demo's `llm` tickets talk to a scripted model server that `fleet demo` runs only while it runs: feedback given
once it ended could start no attempt that reaches a model, and the reviewer is told so in one line at once instead of
meeting an attempt that errors after three tries."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from db.models import Ticket
from orchestrator.errors import FleetError

DEMO_SUBMITTER = "demo"  # who `fleet demo` submits its tickets as
PROBE_SECONDS = 1.0  # a server on this machine answers a connection at once, or refuses it at once


def require_model_server(ticket: Ticket) -> None:
    """Refuse feedback for a demo ticket whose scripted model server stopped: no new attempt could reach a model."""
    stopped = stopped_model_server(ticket)
    if stopped:
        raise FleetError(
            f"ticket {ticket.id} is a `fleet demo` ticket whose scripted model server ({stopped}) stopped with the "
            "demo, so no new attempt could reach it; approve it, reject it without --feedback, or run the demo again"
        )


def stopped_model_server(ticket: Ticket) -> str:
    """The model server a demo ticket's agent is pinned to (`base_url=` on this machine) when nothing listens there
    any more, else ""; any other ticket's server is not probed (a worker's loopback is not the reviewer's)."""
    if ticket.submitted_by != DEMO_SUBMITTER:
        return ""
    for arg in (ticket.agent_options or {}).get("extra_args", []):
        url = str(arg).removeprefix("base_url=")
        parts = urlsplit(url)
        if url != arg and parts.hostname == "127.0.0.1" and parts.port and not _listening(parts.port):
            return url
    return ""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True
