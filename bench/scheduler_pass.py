"""What a scheduler pass costs with a backlog: the CPU of reading the waiting line, however many tickets wait.

    python bench/scheduler_pass.py [--queued 1000,10000] [--passes 200] [--database sqlite,postgresql]
                                   [--baseline DIR]

For each backlog size and database: a new database, that many tickets queued in one batch (the way `fleet submit
--file` writes them), then --passes scheduler passes' reads of the waiting line (`queries.pending` with the
lookahead of a pass that has one free slot), timed by this process's CPU (SQLite works in it) and by the wall clock
(PostgreSQL works in its own processes). With --baseline, the same in another commit's checkout, each size and
database one after the other, in its own process. Prints a JSON line per measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import scratch_database  # bench/scratch.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def measure(url: str, queued: int, passes: int) -> dict[str, float]:
    """Run in the code under test (sys.path): queue the backlog, then time the passes' reads."""
    from db import policy, queries
    from db.engine import Database
    from db.migrate import upgrade
    from workers.scheduler import LOOKAHEAD

    db = Database(url)
    upgrade(db)
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        fields = dict(repo_id=repo.id, body="", base_ref="HEAD", base_sha="0" * 40, agent="shell", attempt_budget=1,
                      targets=[], submitted_by="bench")  # fmt: skip
        policy.open_tickets(s, [policy.NewTicket(dict(fields, title=f"t{n}"), ["shell"], "r") for n in range(queued)])
    with db.session() as s:
        assert len(queries.pending(s, per_repo=LOOKAHEAD)) == min(LOOKAHEAD, queued)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(passes):
            queries.pending(s, per_repo=LOOKAHEAD)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    db.dispose()
    return {"cpu_us_per_pass": round(1e6 * cpu / passes), "wall_us_per_pass": round(1e6 * wall / passes)}


def database_url(kind: str, work: Path, label: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / label}.db"
    return scratch_database("fleet_scheduler_pass")


def run(code: Path, url: str, queued: int, passes: int) -> dict[str, float]:
    """measure() in a process of its own, with code's checkout first on the path."""
    script = f"import sys, json; sys.path.insert(0, {str(ROOT / 'bench')!r}); from scheduler_pass import measure; "
    script += f"print(json.dumps(measure({url!r}, {queued}, {passes})))"
    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=code, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="1000,10000")
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--database", default="sqlite,postgresql")
    parser.add_argument("--baseline", default="", help="another commit's checkout, measured the same way")
    args = parser.parse_args()
    codes = [("this", ROOT)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="fleet-scheduler-pass-") as tmp:
        for kind in args.database.split(","):
            for queued in map(int, args.queued.split(",")):
                for label, code in codes:
                    url = database_url(kind, Path(tmp), f"{label}-{queued}")
                    row = {"database": kind, "queued": queued, "code": label, **run(code, url, queued, args.passes)}
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
