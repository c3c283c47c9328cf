"""A setup command's network: what its sandbox may reach, by the repository's `setup_network`.

A setup may run a diff's code (a changed setup.py, a package.json script), so by default (`proxy`) it gets no more
than an agent: a private loopback, and a gate of the worker's egress proxy (workers/egress.py) that lets through the
operator's FLEET_SETUP_HOSTS (the public package indexes, system/settings.py PACKAGE_INDEXES) and the repository's
`setup_hosts`, and nothing else: not the host's Redis, PostgreSQL or web app, not the LAN, not the cloud metadata.
Package managers find the gate through the proxy variables the in-sandbox relay sets (pip, uv, npm, cargo, go and
git honour them). `none` gives the setup no way out; `host` shares the host's network, as before, by choice.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from verification.environment import SetupEgress, SetupRoute
from workers.egress import RELAY_SCRIPT, EgressGate, relay_argv
from workers.egress_rules import SETUP_SETTING, Verdict
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
        socket = rt.egress_socket(f"{job.attempt_id}-{purpose}-{uuid.uuid4().hex[:8]}")  # one folder per run
        try:
            with rt.egress.open(socket, allow, setting=SETUP_SETTING) as gate:
                relay = relay_argv(sys.executable, RELAY_SCRIPT, socket, 0)
                yield SetupRoute(socket, relay, lambda: [event.line() for event in gate.events], lambda: _denials(gate))
        finally:
            with contextlib.suppress(OSError):  # the gate removed its socket
                socket.parent.rmdir()

    return route


def host_network(job: Job) -> bool:
    """Whether the repository shares the host's network with its setup (`setup_network = host`)."""
    return job.repo_settings.setup_network == "host"


def _denials(gate: EgressGate) -> list[str]:
    """The destinations the gate refused, each with what allows it."""
    refused = dict.fromkeys(event.destination for event in gate.events if event.verdict is Verdict.DENIED)
    return [f"egress denied: {place} (to allow it, add it to {SETUP_SETTING})" for place in refused]
