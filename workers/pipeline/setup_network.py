"""A setup command's way out of its sandbox's private network, when the repository's `setup_network` is `proxy`.

A setup may run a diff's code (a changed setup.py, a package.json script), so by default it gets no more than an
agent: a private loopback, and a gate of the worker's egress proxy (workers/egress.py) that lets through the
operator's FLEET_SETUP_HOSTS (the public package indexes, system/settings.py PACKAGE_INDEXES) and the repository's
`setup_hosts`, and nothing else: not the host's Redis, PostgreSQL or web app, not the LAN, not the cloud metadata.
Package managers find the gate through the proxy variables the in-sandbox relay sets (pip, uv, npm, cargo, go and
git honour them). `none` gives the setup no way out; `host` shares the host's network, by the repository's choice.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from system.files import remove_tree
from verification.environment import SetupEgress, SetupFailed, SetupRoute
from workers.egress import RELAY_SCRIPT, EgressGate, relay_argv
from workers.egress_rules import SETUP_SETTING, EgressError, Verdict
from workers.pipeline.job import Job
from workers.runtime import WorkerRuntime


def setup_egress(rt: WorkerRuntime, job: Job, purpose: str) -> SetupEgress | None:
    """What opens the gate a setup of job goes out through, for one run (purpose names its socket's folder), or
    None when its network is not the proxy."""
    if job.repo_settings.setup_network != "proxy":
        return None
    allow = list(dict.fromkeys([*rt.settings.setup_hosts, *job.repo_settings.setup_hosts]))

    @contextmanager
    def route() -> Iterator[SetupRoute]:
        socket = rt.egress_socket(f"{job.attempt_id}-{purpose}-{uuid.uuid4().hex[:8]}")  # a folder per run
        try:
            try:
                gate = rt.egress.open(socket, allow, setting=SETUP_SETTING)
            except (EgressError, OSError, TimeoutError) as exc:
                raise SetupFailed(f"the setup's way to its package indexes could not open: {exc}") from exc
            with gate:
                relay = relay_argv(sys.executable, RELAY_SCRIPT, socket, 0)
                yield SetupRoute(socket, relay, lambda: [event.line() for event in gate.events], lambda: _denials(gate))
        finally:
            remove_tree(socket.parent)  # bound into the sandbox, writable: whatever the setup left there goes too

    return route


def _denials(gate: EgressGate) -> list[str]:
    """What the gate refused, each destination once, with the proxy's reason."""
    refused = {event.destination: event.detail for event in gate.events if event.verdict is Verdict.DENIED}
    return [f"egress denied: {destination} ({detail})" for destination, detail in refused.items()]
