"""The Evaluations page: a leaderboard of the newest evaluation, a pass@k chart per agent, viewers only."""

from __future__ import annotations

import json

import pytest

from tests.core.conftest import scripted
from tests.web.conftest import make_fleet, make_tokens, settings_for

pytestmark = pytest.mark.slow


def test_leaderboard_shows_each_agent_with_its_chart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path)
    repo = fleet.sample_repo()
    base = (repo / ".git" / "refs" / "heads" / "main").read_text().strip()
    task = {
        "instance_id": "calc__add",
        "repo": "calc",
        "base_commit": base,
        "problem_statement": "add() subtracts.",
        "FAIL_TO_PASS": ["tests/test_calc.py::test_add"],
    }
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(task) + "\n")
    agents = ["--agent", f"fixer={scripted('fix-add')}", "--agent", f"idle={scripted('reads-nothing')}"]
    fleet.run("eval", "run", str(tasks), *agents, "--samples", "2", "--name", "web<b>")
    fleet.up()
    app = create_app(settings_for(fleet), celery_dispatcher)
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="https://localhost")
    assert client.get("/evals", follow_redirects=False).status_code in (303, 401)
    headers = {"Authorization": f"Bearer {make_tokens(app)['viewer']}"}
    page = client.get("/evals", headers=headers).text
    assert page.count('class="agent-row"') == 2 and page.index(">fixer<") < page.index(">idle<")  # best first
    assert 'aria-label="pass@k of fixer (-)"' in page and "pass@2 = 1.000" in page and "pass@1 = 0.000" in page
    assert "web&lt;b&gt;" in page and "web<b>" not in page  # names are escaped
    assert client.get("/evals/nope", headers=headers).status_code == 404
    app.state.fleet.db.dispose()
