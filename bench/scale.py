"""Fleet with a large history: the CLI, the dashboard, the API, the live view and a batch submit.

    python bench/scale.py [--tickets 100000] [--attempts-per-ticket 3] [--runs 7] [--sse-clients 100]
                          [--batch 10000] [--database sqlite|postgresql] [--baseline DIR] [--skip web,sse,batch]

1. Builds the history in bulk (one INSERT per 10,000 rows): N tickets of one repository in every status, each
   with one run of K finished attempts, each attempt with its verification and two events per ticket.
2. CLI: `fleet --help`, `fleet tickets`, `fleet status`, `fleet show ID` as separate processes, wall time
   min/median/max over --runs runs; with --baseline, the same commands of another commit's checkout on the same
   history (built again under its schema), interleaved. The parts below then run for each code in turn, each on
   its own history, their figures named "(this)" and "(baseline)".
3. Web: `fleet web` in its own process; the Fleet page, the tickets list (first page, a filtered page, the page
   after), a ticket page, /api/tickets and /metrics, each requested --runs x 3 times: p50/p95.
4. The live view: --sse-clients browsers on the Fleet page (its two event streams each) and on a ticket page, for
   20 s while nothing changes: the web process's CPU as a share of one core.
5. Batch submit: `fleet submit --file` with --batch tickets into the same database.
Prints JSON lines and writes them to bench/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from procstat import cpu_seconds  # bench/procstat.py, beside this script
from scratch import scratch_database  # bench/scratch.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
STATUSES = ["queued", "running", "needs_review", "approved", "failed", "error", "cancelled"]
VERDICTS = ["passed", "failed", "error"]
CHUNK = 10_000


def fleet(env: dict[str, str], *args: str, cwd: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "fleet", *args], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def make_env(home: Path, database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")} | {"FLEET_HOME": str(home)}
    if database == "postgresql":
        env["FLEET_DATABASE_URL"] = scratch_database("fleet_scale")
    return env


def db_for(env: dict[str, str]) -> Any:
    from db.engine import Database
    from system.settings import Settings

    return Database(Settings(home=Path(env["FLEET_HOME"]), database_url=env.get("FLEET_DATABASE_URL", "")).db_url)


def build_history(env: dict[str, str], tickets: int, per_ticket: int) -> dict[str, Any]:
    """Tickets, runs, attempts, verifications and events in bulk INSERTs of CHUNK rows."""
    from sqlalchemy import func, insert, inspect, select

    from db.models import Attempt, Event, Run, Ticket, Verification

    db, rng = db_for(env), random.Random(7)
    started, now = time.perf_counter(), datetime.now(UTC)
    with db.session() as s:
        first = (s.scalar(select(func.max(Ticket.id))) or 0) + 1
    for lo in range(first, first + tickets, CHUNK):
        ids = range(lo, min(lo + CHUNK, first + tickets))
        at = [now - timedelta(minutes=(first + tickets - t)) for t in ids]
        rows: dict[Any, list[dict[str, Any]]] = {Ticket: [], Run: [], Attempt: [], Verification: [], Event: []}
        for t, when in zip(ids, at, strict=True):
            status = rng.choice(STATUSES)
            rows[Ticket].append(
                dict(id=t, repo_id=1, title=f"ticket {t}: fix the thing", body="b", base_ref="HEAD",
                     base_sha="0" * 40, agent="shell", status=status, status_reason="", created_at=when,
                     updated_at=when, agent_options={}, targets=[], area=[])
            )  # fmt: skip
            run = dict(id=t, ticket_id=t, index=0, agent="shell", attempt_limit=per_ticket, status="failed")
            rows[Run].append(run | {"created_at": when, "finished_at": when + timedelta(seconds=6 * per_ticket)})
            for n in range(per_ticket):
                a = (t - 1) * per_ticket + n + 1
                rows[Attempt].append(
                    dict(id=a, run_id=t, ticket_id=t, number=n + 1, status="finished", diff="--- a\n+++ b\n",
                         diff_stat="1 file, +1 -1", transcript="done\n" * 20, created_at=when, started_at=when,
                         agent_finished_at=when + timedelta(seconds=5), finished_at=when + timedelta(seconds=6))
                )  # fmt: skip
                rows[Verification].append(
                    dict(attempt_id=a, verdict=rng.choice(VERDICTS), reasons=[], output="ok\n" * 10,
                         duration=0.5, created_at=when + timedelta(seconds=6))
                )  # fmt: skip
            rows[Event] += [dict(ticket_id=t, kind="submitted", message="", created_at=when)] * 2
        with db.session() as s:
            for model in (Ticket, Run, Attempt, Verification, Event):
                s.execute(insert(model), rows[model])
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:  # committed: both the sequences and the statistics are transactional
            for table in ("tickets", "runs", "attempts", "verifications", "events"):
                # rows were written with their ids: move each sequence past them, then gather statistics
                conn.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
                conn.exec_driver_sql(f"ANALYZE {table}")
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Rows inserted by the ten thousand in one transaction each fire the triggers that keep /metrics' totals
            # (migration 0009): as many versions of the same few rows, which a fleet's short transactions never pile
            # up (page pruning and autovacuum clear them as it runs). Clear them as autovacuum would.
            if inspect(conn).has_table("metric_totals"):
                conn.exec_driver_sql("VACUUM metric_totals")
    db.dispose()
    return {"tickets": tickets, "attempts": tickets * per_ticket, "build_s": round(time.perf_counter() - started, 1)}


def spread(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "min_ms": round(1000 * ordered[0], 1),
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * p95, 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def cli_times(envs: dict[str, dict[str, str]], runs: int, work: Path, ticket: int) -> dict[str, Any]:
    """Each command under each env (this checkout, and a baseline's), interleaved so that a burst of load
    elsewhere touches every command and both checkouts alike."""
    commands = {"--help": ["--help"], "tickets": ["tickets"], "status": ["status"], "show": ["show", str(ticket)]}
    found: dict[str, list[float]] = {f"{name} ({label})": [] for label in envs for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            for label, env in envs.items():
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "fleet", *args], env=env, cwd=work, check=True, capture_output=True
                )
                found[f"{name} ({label})"].append(time.perf_counter() - started)
    return {name: spread(samples) for name, samples in found.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_web(env: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    token = json.loads(fleet(env, "token", "create", "--role", "admin", "--name", "bench", "--json", cwd=work))["token"]
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "fleet", "web", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return web, f"http://127.0.0.1:{port}", token


def web_times(base: str, token: str, runs: int, ticket: int) -> dict[str, Any]:
    import httpx

    paths = {
        "fleet page": "/",
        "tickets list": "/tickets",
        "tickets list, status filter": "/tickets?status=failed",
        "tickets list, next page": f"/tickets?before={ticket - 500}",
        "ticket page": f"/tickets/{ticket}",
        "/api/tickets": "/api/tickets",
        "/metrics": "/metrics",
    }
    found: dict[str, list[float]] = {name: [] for name in paths}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for path in paths.values():
            client.get(path).raise_for_status()  # warm: templates compiled, connections pooled
        for _ in range(3 * runs):
            for name, path in paths.items():
                started = time.perf_counter()
                client.get(path).raise_for_status()
                found[name].append(time.perf_counter() - started)
    return {name: spread(samples) for name, samples in found.items()}


def sse_cpu(web: subprocess.Popen[bytes], base: str, token: str, clients: int, paths: list[str]) -> dict[str, Any]:
    """clients browsers, each holding every stream in paths open; the web process's CPU share over 20 s."""
    host, port = base.removeprefix("http://").split(":")
    stop, sockets = threading.Event(), []
    for _ in range(clients):
        for path in paths:
            sock = socket.create_connection((host, int(port)))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            sockets.append(sock)

    def drain() -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.5):
                key.fileobj.recv(65536)  # type: ignore[union-attr]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    time.sleep(5)  # every stream answered and polled a few times
    before, started = cpu_seconds(web.pid), time.monotonic()
    time.sleep(20)
    after, ended = cpu_seconds(web.pid), time.monotonic()
    if before is None or after is None:
        sys.exit("bench/scale.py: the web process exited while the live view was measured")
    share = (after - before) / (ended - started)
    stop.set()
    reader.join()
    for sock in sockets:
        sock.close()
    return {"clients": clients, "streams": len(sockets), "web_cpu_share_of_a_core": round(share, 4)}


def batch_submit(env: dict[str, str], work: Path, count: int) -> dict[str, Any]:
    batch = work / "batch.json"
    batch.write_text(json.dumps([{"title": f"batch ticket {n}"} for n in range(count)]))
    args = ["submit", "--repo", "bench", "--attempts", "1", "--agent-cmd", "true", "--file", str(batch)]
    started = time.perf_counter()
    fleet(env, *args, cwd=work)
    return {"tickets": count, "seconds": round(time.perf_counter() - started, 2)}


def web_parts(env: dict[str, str], work: Path, args: Any, ticket: int, emit: Any) -> None:
    web, base, token = start_web(env, work)
    try:
        if "web" not in args.skip:
            emit("web", web_times(base, token, args.runs, ticket))
        if "sse" not in args.skip:
            emit("sse_fleet_page", sse_cpu(web, base, token, args.sse_clients, ["/events/fleet", "/events/review"]))
            emit("sse_ticket_page", sse_cpu(web, base, token, args.sse_clients, [f"/events/tickets/{ticket}"]))
    finally:
        web.terminate()
        web.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--attempts-per-ticket", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sse-clients", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--baseline", default="", help="a checkout of another commit, measured alongside")
    parser.add_argument("--skip", default="", help="parts to leave out: web,sse,batch")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"database": args.database, "nproc": os.cpu_count(), "load": os.getloadavg()}

    def emit(key: str, value: Any) -> None:
        report[key] = value
        print(json.dumps({key: value}), flush=True)

    with tempfile.TemporaryDirectory(prefix="fleet-scale-") as tmp:
        work = Path(tmp)
        env = make_env(work / "home", args.database)
        repo = work / "repo"
        repo.mkdir()
        (repo / "f.txt").write_text("x\n")
        for git_args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b",
                                                                        "commit", "-qm", "base"]):  # fmt: skip
            subprocess.run(["git", *git_args], cwd=repo, check=True)
        envs = {"this": env}
        if args.baseline:  # the same history under the baseline's own schema, for each part of the baseline
            envs["baseline"] = make_env(work / "home-baseline", args.database) | {"PYTHONPATH": args.baseline}
        for label, each in envs.items():
            fleet(each, "repo", "add", "bench", str(repo), "--test-cmd", "true", cwd=work)
            emit(
                "history" + (f" ({label})" if args.baseline else ""),
                build_history(each, args.tickets, args.attempts_per_ticket),
            )
        ticket = args.tickets // 2
        emit("cli", cli_times(envs, args.runs, work, ticket))
        for label, each in envs.items():  # with a baseline, each part of each code is named by its code
            suffix = f" ({label})" if args.baseline else ""
            if "web" not in args.skip or "sse" not in args.skip:
                web_parts(each, work, args, ticket, lambda key, value, named=suffix: emit(key + named, value))
            if args.batch and "batch" not in args.skip:
                emit("batch_submit" + suffix, batch_submit(each, work, args.batch))
    out = RESULTS / f"scale-{args.database}-{datetime.now(UTC).strftime('%Y-%m-%dT%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
