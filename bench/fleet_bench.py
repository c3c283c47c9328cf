"""The fleet benchmark: many tickets at once, dispatch latency, memory per slot, pooled vs fresh worktrees.

    python bench/fleet_bench.py [--tickets 1000] [--slots 100] [--agent-seconds 5] [--modes embedded,team]
                                [--wide 4000,400,4] [--latency-samples 50] [--worktree-files 5000]   (0 skips that part)
    FLEET_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14) is the team mode's broker; it is flushed.

1. Throughput: N tickets whose agent sleeps S seconds then makes a one-line fix, a trivial test command
   (`grep -q fixed state.txt`, judged by its exit code), C slots on one machine. Reports makespan / ideal,
   where ideal = N x (S + bare test time) / C, and Fleet's own CPU time per ticket: the `fleet up` process's
   user+system time (read from /proc, children excluded, so agents and test commands do not count) divided
   by N; and what a ticket costs the whole machine (every process's CPU time during the run, from /proc/stat,
   divided by N: Fleet, git, bwrap, the agents and the test commands, and whatever else runs), of which the
   servers' (PostgreSQL's and Redis's processes, bench/procstat.py), and the seconds before the first agent
   started and after the last one ended.
   Embedded mode (SQLite, serverless broker) and team mode (PostgreSQL + Redis; needs both servers).
   Each row also counts, per ticket, the SQL statements and the commands the worker spawned (bench/counting.py).
   The wide row: team mode, more slots than one process should hold, shared by several `fleet worker` processes.
2. Dispatch latency with idle slots: submit (through the Python API) to the agent's process start, p50/p99.
3. Memory: the worker process's peak resident memory while all slots are busy, divided by the slots.
4. Worktree cost per attempt, 5,000-file repository: pooled lease+release vs `git worktree add`+remove; a diff.
Prints a table; writes JSON, each row's agent starts and ends (`start|end <unix time>` lines) and, with
matplotlib, a PNG of agents busy over time to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from busy import busy_profile, plot  # bench/busy.py, beside this script
from bytecode_written import compiled  # bench/bytecode_written.py
from procstat import cpu_seconds, machine_cpu_seconds, rss_bytes, servers_cpu_seconds  # bench/procstat.py
from scratch import scratch_database  # bench/scratch.py

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TEST_CMD = "grep -q fixed state.txt"


def make_repo(path: Path, files: int = 1) -> None:
    path.mkdir(parents=True)
    (path / "state.txt").write_text("broken\n")
    for n in range(files - 1):
        sub = path / f"pkg{n // 500}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod{n}.py").write_text(f"VALUE = {n}\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "base"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)


def fleet_env(home: Path, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_HOME"] = str(home)
    if mode == "team":
        env["FLEET_DATABASE_URL"] = scratch_database("fleet_bench")
        env["FLEET_BROKER_URL"] = os.environ.get("FLEET_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
        import redis

        redis.Redis.from_url(env["FLEET_BROKER_URL"]).flushdb()
    return env


def fleet(env: dict[str, str], *args: str, cwd: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "fleet", *args], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@contextlib.contextmanager
def connected(env: dict[str, str]) -> Iterator[Any]:
    """A connection to the run's database, its engine disposed of on the way out."""
    from db.engine import Database
    from system.settings import Settings

    db = Database(Settings(home=Path(env["FLEET_HOME"]), database_url=env.get("FLEET_DATABASE_URL", "")).db_url)
    try:
        with db.engine.connect() as conn:
            yield conn
    finally:
        db.dispose()


def last_verdict(env: dict[str, str]) -> float | None:
    """When the run's last verdict was recorded (seconds since the epoch); None without one."""
    with connected(env) as conn:
        written = conn.exec_driver_sql("SELECT max(created_at) FROM verifications").scalar_one()
    return None if written is None else datetime.fromisoformat(str(written)).replace(tzinfo=UTC).timestamp()


def transcripts(env: dict[str, str], ticket_ids: list[int] | None = None) -> list[str]:
    """The agents' transcripts, straight from the database (the agents print their start and end times)."""
    from sqlalchemy import text

    query = "SELECT transcript FROM attempts" + (" WHERE ticket_id = :t" if ticket_ids else "")
    with connected(env) as conn:
        if not ticket_ids:
            return [row[0] or "" for row in conn.execute(text(query))]
        return [row[0] or "" for t in ticket_ids for row in conn.execute(text(query), {"t": t})]


def stamps(transcript: str, kind: str) -> list[float]:
    return [float(line.split()[1]) for line in transcript.splitlines() if line.startswith(f"{kind} ")]


def bare_test_seconds(repo: Path, runs: int = 20) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", TEST_CMD], cwd=repo)
    return (time.perf_counter() - started) / runs


def submit_batch(env: dict[str, str], work: Path, mode: str, tickets: int, agent_seconds: float) -> None:
    agent = f"echo start $(date +%s.%N); sleep {agent_seconds}; echo fixed > state.txt; echo end $(date +%s.%N)"
    batch = work / f"tickets-{mode}.json"
    batch.write_text(json.dumps([{"title": f"ticket {n}"} for n in range(tickets)]))
    args = ["--repo", "bench", "--attempts", "1", "--agent-cmd", f"sh -c {shlex.quote(agent)}", "--file", str(batch)]
    fleet(env, "submit", *args, cwd=work)


def open_attempts(env: dict[str, str]) -> int:
    query = "SELECT count(*) FROM attempts WHERE status IN ('queued', 'running', 'verify_queued', 'verifying')"
    with connected(env) as conn:
        return int(conn.exec_driver_sql(query).scalar() or 0)


def start_workers(
    env: dict[str, str], work: Path, slots: int, processes: int
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """`fleet up --until-idle` (one process), else `fleet worker` processes sharing the slots; each counted."""
    started = []
    for n in range(processes):
        counts = work / f"counts-{uuid.uuid4().hex[:6]}.json"
        share = slots // processes + (1 if n < slots % processes else 0)
        command = ["up", "--until-idle"] if processes == 1 else ["worker"]
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "counting.py"), str(counts), *command, "--concurrency", str(share)],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append((proc, counts))
    return started


def watch(env: dict[str, str], workers: list[tuple[subprocess.Popen[bytes], Path]]) -> tuple[float, int]:
    """Wait until every attempt has ended (or `fleet up` exits); returns the workers' CPU seconds and peak RSS."""
    cpu: dict[int, float] = {}
    peak_rss, last_check = 0, time.monotonic()
    procs = [proc for proc, _ in workers]
    try:
        while any(proc.poll() is None for proc in procs):
            for proc in procs:
                cpu[proc.pid] = cpu_seconds(proc.pid) or cpu.get(proc.pid, 0.0)
            peak_rss = max(peak_rss, sum(rss_bytes(proc.pid) for proc in procs))
            running = [proc for proc in procs if proc.poll() is None]
            if running:  # a run of one process ends the moment it exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running[0].wait(timeout=0.2)
            if len(procs) > 1 and time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                try:
                    if open_attempts(env) == 0:
                        break
                except Exception as exc:  # a shared server may be out of connections for a moment
                    print(f"could not count open attempts: {exc}", file=sys.stderr)
    finally:  # never leave workers behind, whatever stopped the watch
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=120)
    return sum(cpu.values()), peak_rss


def counted(workers: list[tuple[subprocess.Popen[bytes], Path]], tickets: int) -> dict[str, Any]:
    statements: Counter[str] = Counter()
    spawns: Counter[str] = Counter()
    for _, path in workers:
        if path.exists():
            data = json.loads(path.read_text())
            statements.update(data["statements"])
            spawns.update(data["spawns"])
    return {
        "sql_statements_per_ticket": round(sum(statements.values()) / tickets, 1),
        "sql_by_kind_per_ticket": {k: round(v / tickets, 1) for k, v in statements.most_common()},
        "spawns_per_ticket": {k: round(v / tickets, 2) for k, v in spawns.most_common()},
    }


def throughput(
    mode: str, tickets: int, slots: int, agent_seconds: float, work: Path, processes: int = 1, code: str = ""
) -> dict[str, Any]:
    """One row; code: a checkout of another commit to run instead of this one (PYTHONPATH), for side by side rows."""
    label = f"{mode}-{slots}x{processes}-{'base' if code else 'this'}"
    home, repo, log = work / f"home-{label}", work / f"repo-{label}", work / f"busy-{label}.log"
    make_repo(repo)
    # Before the pools grew to what is leased at once, their default size was one process's slots.
    env = fleet_env(home, mode) | ({"PYTHONPATH": code, "FLEET_WORKTREE_POOL_SIZE": str(slots)} if code else {})
    compiled(Path(code) if code else ROOT)  # both codes of a pair start from bytecode
    fleet(env, "repo", "add", "bench", str(repo), "--test-cmd", TEST_CMD, cwd=work)
    submit_batch(env, work, label, tickets, agent_seconds)
    started, wall_started, machine_before = time.monotonic(), time.time(), machine_cpu_seconds()
    servers_before = servers_cpu_seconds()
    workers = start_workers(env, work, slots, processes)
    cpu, peak_rss = watch(env, workers)
    makespan, machine_cpu = time.monotonic() - started, machine_cpu_seconds() - machine_before
    servers = {name: seconds - servers_before[name] for name, seconds in servers_cpu_seconds().items()}
    told, verdict = transcripts(env), last_verdict(env)
    starts, ends = [ts for t in told for ts in stamps(t, "start")], [ts for t in told for ts in stamps(t, "end")]
    log.write_text("".join(f"start {ts}\n" for ts in starts) + "".join(f"end {ts}\n" for ts in ends))
    counts = json.loads(fleet(env, "status", "--json", cwd=work))["tickets"]
    bare = bare_test_seconds(repo)
    ideal = tickets * (agent_seconds + bare) / slots
    return {
        "code": code or "this checkout",
        "mode": mode,
        "worker_processes": processes,
        "tickets": tickets,
        "slots": slots,
        "agent_seconds": agent_seconds,
        "makespan_s": round(makespan, 2),
        "ideal_s": round(ideal, 2),
        "makespan_over_ideal": round(makespan / ideal, 3),
        "fleet_cpu_ms_per_ticket": round(1000 * cpu / tickets, 1),
        # Everything the machine ran meanwhile: Fleet, git, bwrap, the agents and tests (and any other job).
        "machine_cpu_ms_per_ticket": round(1000 * machine_cpu / tickets, 1),
        # Of which the servers (PostgreSQL, Redis), in team mode; their other clients' work counts too.
        "servers_cpu_ms_per_ticket": {name: round(1000 * seconds / tickets, 1) for name, seconds in servers.items()},
        **counted(workers, tickets),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "rss_mb_per_slot": round(peak_rss / 2**20 / slots, 2),
        "verified": counts.get("needs_review", 0),
        "not_verified": {status: n for status, n in counts.items() if status != "needs_review" and n},
        "busy": busy_profile(log, slots),
        "until_first_agent_s": round(min(starts) - wall_started, 2),
        "after_last_agent_s": round(wall_started + makespan - max(ends), 2),
        # The worker's own stop, for one process (several are stopped by this script once no attempt is open).
        "after_last_verdict_s": round(wall_started + makespan - verdict, 2) if verdict and processes == 1 else None,
        "busy_log": str(log),
    }


def dispatch_latency(samples: int, work: Path) -> dict[str, Any]:
    """Team mode: one idle worker; each ticket is submitted through the Python API and timed to agent start."""
    home, repo = work / "home-latency", work / "repo-latency"
    make_repo(repo)
    env = fleet_env(home, "team")
    fleet(env, "repo", "add", "bench", str(repo), "--test-cmd", TEST_CMD, cwd=work)
    worker = subprocess.Popen(
        [sys.executable, "-m", "fleet", "worker", "--concurrency", "4"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("FLEET_")})
    from db.specs import TicketSpec
    from fleet.cli.context import Context
    from orchestrator.tickets import submit

    ctx = Context()
    agent = f"sh -c {shlex.quote('echo start $(date +%s.%N); echo fixed > state.txt')}"
    latencies = []
    time.sleep(3)  # the worker registers its slots
    for n in range(samples):
        sent = time.time()
        [ticket] = submit(
            ctx.db,
            ctx.dispatcher,
            ctx.settings,
            [TicketSpec(repo="bench", title=f"latency {n}", agent_cmd=agent, attempts=1)],
            work,
            "bench",
        )
        while not (started := [s for t in transcripts(env, [ticket.id]) for s in stamps(t, "start")]):
            time.sleep(0.05)  # the transcript is stored when the agent ends; the stamp is its start
        latencies.append(started[0] - sent)
        time.sleep(0.3)
    worker.terminate()
    worker.wait(timeout=60)
    latencies.sort()
    return {
        "samples": samples,
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


def worktree_cost(files: int, rounds: int, work: Path) -> dict[str, Any]:
    from system.git import git
    from system.mirror import ensure_mirror
    from workers.worktree import WorktreePool

    repo = work / "big-repo"
    make_repo(repo, files=files)
    sha = git("rev-parse", "HEAD", cwd=repo).strip()
    mirror = ensure_mirror(work / "mirrors", "repo-big", str(repo), sha)
    pool = WorktreePool(work / "pool", mirror, size=2)
    with pool.lease(sha):
        pass  # the first lease creates the slot; steady state is reuse
    started = time.perf_counter()
    for _ in range(rounds):
        with pool.lease(sha) as tree:
            (tree.path / "state.txt").write_text("edited\n")
    pooled = (time.perf_counter() - started) / rounds
    diffs = []
    for _ in range(rounds):
        with pool.lease(sha) as tree:
            (tree.path / "state.txt").write_text("edited\n")
            started = time.perf_counter()
            tree.diff(5 * 2**20)
            diffs.append(time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(rounds):
        path = work / f"fresh-{n}"
        git("worktree", "add", "--detach", str(path), sha, cwd=mirror)
        (path / "state.txt").write_text("edited\n")
        git("worktree", "remove", "--force", str(path), cwd=mirror)
    fresh = (time.perf_counter() - started) / rounds
    return {
        "files": files,
        "rounds": rounds,
        "pooled_ms": round(1000 * pooled, 1),
        "fresh_ms": round(1000 * fresh, 1),
        "pooled_over_fresh": round(pooled / fresh, 3),
        "pooled_diff_ms": round(1000 * statistics.median(diffs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--agent-seconds", type=float, default=5.0)
    parser.add_argument("--modes", default="embedded,team")
    parser.add_argument(
        "--wide", default="4000,400,4", help="the wide row, team mode: tickets,slots,worker processes ('' skips it)"
    )
    parser.add_argument(
        "--baseline", default="", help="another commit's checkout: each row (--modes, --wide) runs with it too"
    )
    parser.add_argument("--latency-samples", type=int, default=50, help="0 skips the dispatch latency part")
    parser.add_argument("--worktree-files", type=int, default=5000, help="0 skips the worktree cost part")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    report: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "throughput": [],
    }
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(tmp)
        codes = [args.baseline, ""] if args.baseline else [""]
        runs = [(mode, args.tickets, args.slots, 1, code) for mode in args.modes.split(",") if mode for code in codes]
        if args.wide:
            tickets, slots, processes = map(int, args.wide.split(","))
            runs += [("team", tickets, slots, processes, code) for code in codes]
        for mode, tickets, slots, processes, code in runs:
            row = throughput(mode, tickets, slots, args.agent_seconds, work, processes, code)
            png = RESULTS / f"fleet_busy-{mode}-{slots}x{processes}{'-base' if code else ''}-{stamp}.png"
            log = Path(row.pop("busy_log"))
            if plot(log, png):
                row["plot"] = str(png.relative_to(ROOT))
            row["busy_log"] = str(Path(shutil.copy(log, png.with_suffix(".log"))).relative_to(ROOT))
            report["throughput"].append(row)
            print(json.dumps(row))
            print(f"plot written to {row['plot']}" if "plot" in row else "no plot: pip install -e .[bench]")
        if args.latency_samples:
            report["dispatch_latency_team"] = dispatch_latency(args.latency_samples, work)
            print(json.dumps(report["dispatch_latency_team"]))
        if args.worktree_files:
            report["worktree"] = worktree_cost(args.worktree_files, 10, work)
            print(json.dumps(report["worktree"]))
    out = RESULTS / f"fleet_bench-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
