"""Agent classes run only when an admin lists them (FLEET_AGENT_CLASSES), never inside the worker process.

Through the real command line and `fleet up`: refusals at submit, a class that raises SystemExit ends its attempt
as an `error` (and the queue drains), a class that works reaches review with its cost, and the worker refuses a
class no longer listed without importing anything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from system.sandbox import bwrap_missing
from tests.core.conftest import Fleet
from tests.core.test_bad_input import assert_one_line_error, run_all
from workers.agents.scripted_class import COST_USD, MARKER_ENV, TOKENS_IN, TOKENS_OUT

ADD = "tests/test_calc.py::test_add"
FIX_ADD = "workers.agents.scripted_class:FixAdd"
EXITS = "workers.agents.scripted_class:Exits"


def allow(fleet: Fleet, *classes: str) -> None:
    fleet.env["FLEET_AGENT_CLASSES"] = json.dumps(list(classes))


def attempts(fleet: Fleet, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    shown = fleet.json("show", str(ticket["id"]))
    return [a for run in shown["runs"] for a in run["attempts"]]


def test_submit_refuses_a_class_not_on_the_allow_list(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    allow(fleet, FIX_ADD)
    (fleet.tmp / "batch.yaml").write_text(f"- title: fine\n  agent: {FIX_ADD}\n- title: bad\n  agent: os:system\n")
    ok = ["submit", "--repo", "calc", "--title", "t"]
    results = run_all(
        fleet,
        {
            "unittest": [*ok, "--agent", "unittest.__main__:TestProgram"],
            "os.system": [*ok, "--agent", "os:system"],
            "batch": ["submit", "--repo", "calc", "--file", "batch.yaml"],
            "repo default": ["repo", "add", "other", str(repo), "--test-cmd", "true", "--agent", "os.system"],
        },
    )
    for name, agent in (("unittest", "unittest.__main__:TestProgram"), ("os.system", "os:system")):
        assert_one_line_error(results[name], f"agent {agent!r} is not allowed", "FLEET_AGENT_CLASSES", FIX_ADD)
    assert_one_line_error(results["batch"], "ticket 2 in", "agent 'os:system' is not allowed", "FLEET_AGENT_CLASSES")
    assert_one_line_error(results["repo default"], "agent 'os.system' is not allowed", "FLEET_AGENT_CLASSES")
    assert fleet.json("tickets") == []
    assert [r["name"] for r in fleet.json("repo", "list")] == ["calc"]


@pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")
def test_a_class_that_raises_systemexit_is_an_error_and_one_that_works_is_verified(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    allow(fleet, FIX_ADD, EXITS)
    [exits] = fleet.submit("--repo", "calc", "--title", "exits", "--body", ADD, "--agent", EXITS, "--attempts", "2")
    [works] = fleet.submit("--repo", "calc", "--title", "add", "--body", ADD, "--agent", FIX_ADD, "--attempts", "1")
    fleet.run("up", "--until-idle", "--concurrency", "4", timeout=120)  # before: retried every lease, forever

    shown = fleet.json("show", str(exits["id"]))
    assert shown["status"] == "error" and "raised SystemExit: 3" in shown["reason"]
    [exited] = attempts(fleet, exits)  # an error is the environment's, not the diff's: no second attempt
    assert (exited["status"], exited["verdict"]) == ("finished", "error")
    assert exited["error"] == f"agent class {EXITS} raised SystemExit: 3"

    assert fleet.json("show", str(works["id"]))["status"] == "needs_review"
    [attempt] = attempts(fleet, works)
    assert attempt["verdict"] == "passed"
    assert (attempt["tokens_in"], attempt["tokens_out"], attempt["cost_usd"]) == (TOKENS_IN, TOKENS_OUT, COST_USD)
    transcript = fleet.json("review", "show", str(works["id"]))["candidates"][0]["transcript"]
    # Its own process, in the attempt's sandbox: bwrap is pid 1 of the PID namespace the class runs in.
    assert "__main__ workers.agents.hosted, pid 1 bwrap" in transcript


def test_the_worker_never_imports_a_class_and_refuses_one_no_longer_listed(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the class marks its import in a file outside any sandbox
    marker = fleet.tmp / "imported-by"
    fleet.env[MARKER_ENV] = str(marker)  # every fleet process has it: any of them importing the class would show
    fleet.in_process = False  # this process imported the class already: only fresh `fleet` processes can tell
    fleet.sample_repo()
    allow(fleet, FIX_ADD, EXITS)
    common = ["--repo", "calc", "--body", ADD, "--attempts", "1", "--agent-env", MARKER_ENV]
    [works] = fleet.submit(*common, "--title", "add", "--agent", FIX_ADD)
    [dropped] = fleet.submit(*common, "--title", "dropped", "--agent", EXITS)
    allow(fleet, FIX_ADD)  # the admin takes EXITS off the list before the workers start

    up = fleet.popen("up", "--until-idle")
    output, _ = up.communicate(timeout=120)
    assert up.returncode == 0, output

    assert fleet.json("show", str(works["id"]))["status"] == "needs_review"
    shown = fleet.json("show", str(dropped["id"]))
    assert shown["status"] == "error"
    assert f"agent {EXITS!r} is not allowed" in shown["reason"] and "FLEET_AGENT_CLASSES" in shown["reason"]
    # Imported once, by the one attempt that ran it, in a process that is not the worker (nor the CLI).
    [pid] = marker.read_text().split()
    assert int(pid) != up.pid
