"""What the triggers that keep /metrics' totals (migration 0009) cost the writes they watch.

    python bench/metric_totals.py [--attempts 2000] [--pairs 2]

Each attempt is one short transaction as a worker writes it: the agent's end (cost, agent_finished_at) and the
verification. Timed on SQLite and PostgreSQL (127.0.0.1:5432, a database of its own, dropped after), with the
triggers and with them dropped, alternately; prints milliseconds per attempt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/scratch.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SQLITE_TRIGGERS = ("verification", "attempt_cost_insert", "attempt_cost_update", "agent_insert", "agent_update")


def drop_triggers(engine: Any) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP FUNCTION fleet_count_attempt() CASCADE")
            conn.exec_driver_sql("DROP FUNCTION fleet_count_verification() CASCADE")
        else:
            for name in SQLITE_TRIGGERS:
                conn.exec_driver_sql(f"DROP TRIGGER metric_{name}")


def per_attempt(url: str, attempts: int, triggers: bool) -> float:
    from sqlalchemy import update

    from db import queries
    from db.engine import Database
    from db.migrate import upgrade
    from db.models import Attempt, utcnow

    db = Database(url)
    upgrade(db)
    if not triggers:
        drop_triggers(db.engine)
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/x", test_cmd="t")
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="a" * 40, agent="shell"
        )
        ids = [queries.add_attempt(s, ticket.runs[0], "p").id for _ in range(attempts)]
        s.execute(update(Attempt).values(started_at=utcnow()))
    started = time.perf_counter()
    for attempt in ids:
        with db.session() as s:
            s.execute(update(Attempt).where(Attempt.id == attempt).values(cost_usd=0.01, agent_finished_at=utcnow()))
            queries.add_verification(s, attempt, verdict="passed", duration=1.0)
    elapsed = time.perf_counter() - started
    db.dispose()
    return 1000 * elapsed / attempts


def on_postgresql(attempts: int, triggers: bool) -> float:
    return per_attempt(scratch_database("fleet_bench_totals"), attempts, triggers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.pairs):
        for triggers in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                sqlite = per_attempt(f"sqlite:///{tmp}/fleet.db", args.attempts, triggers)
            postgres = on_postgresql(args.attempts, triggers)
            label = "with triggers   " if triggers else "without triggers"
            print(f"{label}: SQLite {sqlite:.3f} ms, PostgreSQL {postgres:.3f} ms per attempt", flush=True)


if __name__ == "__main__":
    main()
