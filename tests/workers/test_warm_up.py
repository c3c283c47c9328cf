"""A worker starts its model gateway's listener beside its own start: the first wave's agents do not wait for it."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import Fleet, in_process_worker
from workers.constants import AGENT_QUEUE, QUEUES, VERIFY_QUEUE


@pytest.mark.parametrize("queues", [AGENT_QUEUE, ",".join(QUEUES)])
def test_a_worker_that_runs_agents_listens_on_its_gateway_before_its_first_attempt(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, queues: str
) -> None:
    rt = in_process_worker(embedded, monkeypatch, queues)
    rt.start()
    try:
        rt.warming.join(timeout=30)
        assert rt.gateway.port != 0, "no attempt opened a gate, yet the listener should be up"
        with socket.create_connection(("127.0.0.1", rt.gateway.port), timeout=5):
            pass
    finally:
        rt.stop()
    with pytest.raises(ConnectionRefusedError):  # where a stopped worker left its gateway listening
        socket.create_connection(("127.0.0.1", rt.gateway.port), timeout=5).close()


def test_a_stopped_worker_leaves_no_egress_gate_or_socket_folder(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = in_process_worker(embedded, monkeypatch, AGENT_QUEUE)
    rt.start()
    socket_path = rt.egress_socket(7)
    rt.egress.open(socket_path, ["127.0.0.1:9"])
    assert socket_path.exists()
    rt.stop()
    assert not socket_path.parent.parent.exists()  # where a stopped worker left its sockets' folder in /tmp


def test_a_worker_that_only_verifies_starts_no_gateway(embedded: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = in_process_worker(embedded, monkeypatch, VERIFY_QUEUE)
    rt.start()
    rt.warming.join(timeout=30)
    rt.stop()
    assert rt.gateway.port == 0


def test_a_gateway_that_fails_to_start_with_the_worker_is_logged_and_started_by_the_first_gate(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rt = in_process_worker(embedded, monkeypatch, AGENT_QUEUE)
    starts: list[int] = []
    start = rt.gateway.start

    def refused_once() -> None:
        starts.append(1)
        if len(starts) == 1:
            raise OSError("no port to listen on")
        start()

    monkeypatch.setattr(rt.gateway, "start", refused_once)
    rt.start()
    try:
        rt.warming.join(timeout=30)
        assert rt.gateway.port == 0
        assert "the model gateway did not start with the worker" in caplog.text
        assert "no port to listen on" in caplog.text
        rt.gateway.start()  # what the first attempt's open() calls
        assert rt.gateway.port != 0
    finally:
        rt.stop()
