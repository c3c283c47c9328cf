"""/metrics after tickets ran through real workers, on SQLite and PostgreSQL: the running totals it reads equal the
full aggregation of the rows, before and after `fleet gc --older-than`, and a removed repository takes nothing off."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from db.dashboard import DURATION_BOUNDS, Histogram, Totals
from fleet.wiring import celery_dispatcher
from orchestrator.web.app import create_app
from orchestrator.web.auth import Role, new_token
from system.settings import Settings
from tests.conftest import Fleet, make_test_fleet
from tests.core.conftest import scripted
from tests.db.test_metric_totals import assert_same, recount

FIX_ADD = "workers.agents.scripted_class:FixAdd"  # reports its spend: COST_USD per attempt
SAMPLE = re.compile(r'^(fleet_[a-z_]+)(?:\{(\w+)="([^"]*)"\})? (\S+)$', re.M)


def scraper(fleet: Fleet) -> Callable[[], Totals]:
    """/metrics as Prometheus reads it with a viewer token, back in the shape of the totals."""
    from fastapi.testclient import TestClient

    settings = Settings(home=fleet.home, database_url=fleet.database_url, broker_url="embedded")
    app = create_app(settings, celery_dispatcher)
    token = new_token(app.state.fleet.db, Role.VIEWER, "prometheus", "test")[1]
    client = TestClient(app, base_url="http://localhost", headers={"Authorization": f"Bearer {token}"})
    return lambda: parsed(client.get("/metrics").text)


def parsed(text: str) -> Totals:
    samples: dict[str, dict[str, float]] = {}
    for name, _, label, value in SAMPLE.findall(text):
        samples.setdefault(name, {})[label] = float(value)

    def histogram(name: str) -> Histogram:
        buckets = samples[f"{name}_bucket"]
        at_most = [int(buckets[f"{bound:g}"]) for bound in DURATION_BOUNDS]
        return Histogram(at_most, samples[f"{name}_sum"][""], int(samples[f"{name}_count"][""]))

    verdicts = {verdict: int(n) for verdict, n in samples.get("fleet_verifications_total", {}).items()}
    return Totals(
        verdicts=verdicts,
        verification_seconds=histogram("fleet_verification_duration_seconds"),
        agent_seconds=histogram("fleet_agent_duration_seconds"),
        cost_usd=samples["fleet_cost_usd_total"][""],
    )


def test_metrics_equal_the_full_aggregation_after_real_workers(database_url: str, tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, database_url, "embedded", FLEET_AGENT_CLASSES=json.dumps([FIX_ADD]))
    fleet.sample_repo()
    body = "tests/test_calc.py::test_add fails"
    for n in range(3):
        fleet.submit("--repo", "calc", "--title", f"fix {n}", "--body", body, "--agent", FIX_ADD, "--attempts", "1")
    fleet.submit(
        "--repo", "calc", "--title", "never", "--body", body, "--agent-cmd", scripted("never"), "--attempts", "2"
    )
    fleet.up(concurrency=4)
    db = fleet.db()
    counted = recount(db)
    assert counted.verdicts == {"passed": 3, "failed": 2}  # the one that never fixes it: two attempts
    assert counted.agent_seconds.count == 5 and counted.cost_usd > 0
    scraped = scraper(fleet)
    before = scraped()
    assert_same(before, counted)
    fleet.run("gc", "--older-than", "0")  # empties text; rows and verdicts stay, and so do the totals
    assert_same(scraped(), recount(db))
    fleet.run("cancel", "--all", "--repo", "calc", "--include-review", "--yes")
    fleet.run("repo", "remove", "calc", "--yes")
    assert recount(db).verdicts == {}
    assert scraped() == before  # counters never go backwards


def test_sample_values_are_written_in_full() -> None:
    from orchestrator.web.metrics import family, histogram

    spend = family("fleet_cost_usd_total", "counter", "Spend.", [({}, 1234.5678901)])
    assert spend[-1] == "fleet_cost_usd_total 1234.5678901"  # not `:g`'s 1234.57
    lines = histogram("t", "Time.", Histogram([1] * len(DURATION_BOUNDS), 2.5954851420001432, 7))
    assert "t_sum 2.5954851420001432" in lines and "t_count 7" in lines and 't_bucket{le="1"} 1' in lines
