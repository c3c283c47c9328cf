"""Through Fleet, sandboxed with the network on: an agent command calls its model at the base URL and key it is
given, the gateway meters the call with the worker's real key, and the attempt is billed what the provider billed."""

from __future__ import annotations

import shlex
import sys

import pytest

from db import queries
from tests.conftest import Fleet
from tests.gateway.upstream import BILLED, GOOD_KEY, model_upstream
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

ADD = "tests/test_calc.py::test_add fails"
# An agent CLI in miniature: one streamed chat completion with what its environment holds, then the fix.
AGENT = """#!{python}
import json, os, pathlib, urllib.request
body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "fix add"}]})
request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", body.encode(), method="POST")
request.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
request.add_header("Content-Type", "application/json")
with urllib.request.urlopen(request, timeout=30) as answer:
    print("STREAM", len(answer.read()), flush=True)
calc = pathlib.Path("calc.py")
calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
"""


@pytest.mark.slow
def test_a_sandboxed_agent_is_metered_with_the_workers_key_it_never_sees(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.tmp / "calc"
    write_sample_repo(repo)
    fleet.run("repo", "add", "calc", str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--agent-network", "on")
    program = fleet.tmp / "agent.py"
    program.write_text(AGENT.replace("{python}", sys.executable))
    program.chmod(0o755)
    with model_upstream() as provider:
        fleet.env.update(FLEET_GATEWAY_OPENAI_URL=provider.url + "/v1", OPENAI_API_KEY=GOOD_KEY)
        [ticket] = fleet.submit(
            "--repo", "calc", "--title", "t", "--body", ADD, "--agent-cmd", shlex.join([str(program)])
        )
        fleet.up()
    [attempt] = [a for run in fleet.json("show", str(ticket["id"]))["runs"] for a in run["attempts"]]
    logs = fleet.run("logs", str(attempt["id"])).stdout
    assert attempt["verdict"] == "passed", logs
    assert (attempt["tokens_in"], attempt["tokens_out"]) == BILLED["openai-chat"][:2]
    assert attempt["cost_usd"] == pytest.approx((1000 * 2.5 + 200 * 1.25 + 50 * 10) / 1e6)
    assert [seen.headers["authorization"] for seen in provider.seen] == [f"Bearer {GOOD_KEY}"]
    with fleet.db().session() as s:
        [call] = queries.model_calls(s, attempt["id"])
    assert (call.protocol, call.streamed, call.status) == ("openai-chat", True, 200)
    assert GOOD_KEY not in logs + call.request + call.response
