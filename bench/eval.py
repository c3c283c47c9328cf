"""`fleet eval run` throughput: 100 tasks x 4 samples with a scripted agent, on one machine.

    python bench/eval.py [--tasks 100] [--samples 4] [--concurrency 4]

The sample repository gets one commit per task (each task has its own base commit, as SWE-bench instances do,
so every task pays for its own baseline run); each task names one of calc.py's three bugs. The agent is the
scripted `fix-all` (every sample passes). Driven through the real CLI in embedded mode (SQLite, the serverless
broker, the workers of `fleet up`). Reports tasks and attempts per minute and Fleet's overhead per attempt (the
median attempt's wall time less what its parts cost when run bare: the scripted agent's command and the test
command, each timed alone in a checkout) and per task (all attempts' wall time less the bare parts, over the
tasks: this includes each task's baseline run). Writes JSON to bench/results/.

The SWE-bench harness, for comparison, runs every instance in a Docker container of its own, started from an
instance image (base, environment and instance layers), and documents resources, not seconds per instance:
"at least 120GB of free storage, 16GB of RAM, and 8 CPU cores", with `--max_workers` below
`min(0.75 * os.cpu_count(), 24)` (SWE-bench/SWE-bench README.md, commit 0ba8e661). Fleet needs no image: a
pooled git worktree at the base commit, a bubblewrap sandbox, and the environment cache when a setup command
exists. The honest comparison is of mechanisms and footprint; no per-instance time of the harness is invented.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test Fleet lives with the tests that use it too

from db.engine import Database  # noqa: E402
from db.models import Attempt  # noqa: E402
from system.git import git  # noqa: E402
from tests.e2e_verification.helpers import embedded_fleet  # noqa: E402
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command, write_sample_repo  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BUGS = {
    "add": "tests/test_calc.py::test_add",
    "mul": "tests/test_calc.py::test_mul",
    "div": "tests/test_calc.py::test_div",
}
HARNESS = {
    "source": "SWE-bench/SWE-bench README.md at commit 0ba8e661578936b6d6248046418ab1561b1b686b",
    "per_instance": "one Docker container per instance, from a prebuilt or locally built instance image",
    "recommended_machine": "x86_64, at least 120GB of free storage, 16GB of RAM, 8 CPU cores",
    "max_workers": "fewer than min(0.75 * os.cpu_count(), 24)",
    "documented_seconds_per_instance": None,
}


def task_set(repo: Path, count: int, out: Path) -> None:
    """One commit per task (a line added to README.md), the task's base."""
    lines = []
    for i in range(count):
        with (repo / "README.md").open("a") as readme:
            readme.write(f"task {i}\n")
        git("commit", "--quiet", "-am", f"task {i}", cwd=repo)
        bug = list(BUGS)[i % len(BUGS)]
        row = {
            "instance_id": f"calc__{bug}-{i}",
            "repo": "calc",
            "base_commit": git("rev-parse", "HEAD", cwd=repo).strip(),
            "problem_statement": f"{bug}() is wrong.",
            "FAIL_TO_PASS": [BUGS[bug]],
            "PASS_TO_PASS": ["tests/test_calc.py::test_neg"],
        }
        lines.append(json.dumps(row))
    out.write_text("\n".join(lines) + "\n")


def bare_seconds(argv: list[str], cwd: Path, env: dict[str, str], runs: int = 5) -> float:
    """The median wall time of a command run bare in a fresh copy of the repository's checkout."""
    times = []
    for _ in range(runs):
        git("checkout", "--quiet", "--force", ".", cwd=cwd)
        started = time.monotonic()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.monotonic() - started)
    git("checkout", "--quiet", "--force", ".", cwd=cwd)
    return statistics.median(times)


def attempt_parts(database_url: str) -> dict[str, float]:
    with Database(database_url).session() as s:
        rows = [a for a in s.query(Attempt).all() if a.started_at and a.agent_finished_at and a.finished_at]
        agent = [(a.agent_finished_at - a.started_at).total_seconds() for a in rows]
        verify = [(a.finished_at - a.agent_finished_at).total_seconds() for a in rows]
        whole = [(a.finished_at - a.started_at).total_seconds() for a in rows]
    return {
        "attempts": len(rows),
        "median_agent_step_s": round(statistics.median(agent), 3),
        "median_verify_step_s": round(statistics.median(verify), 3),
        "median_attempt_s": round(statistics.median(whole), 3),
        "total_attempt_s": round(sum(whole), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-eval-") as tmp:
        fleet = embedded_fleet(Path(tmp))
        fleet.in_process = False  # every command as a `fleet` process, as a user runs it
        repo = fleet.tmp / "calc"
        write_sample_repo(repo)
        fleet.run("repo", "add", "calc", str(repo), "--test-cmd", SAMPLE_TEST_CMD)
        tasks = fleet.tmp / "tasks.jsonl"
        task_set(repo, args.tasks, tasks)
        agent = shlex.join(scripted_command("fix-all"))
        started = time.monotonic()
        fleet.run(
            "eval", "run", str(tasks), "--agent", f"fix-all={agent}", "--samples", str(args.samples), "--name", "bench"
        )
        queued = time.monotonic()
        fleet.run("up", "--until-idle", "--concurrency", str(args.concurrency), timeout=7200)
        finished = time.monotonic()
        report = json.loads(fleet.run("eval", "report", "bench", "--json").stdout)
        parts = attempt_parts(fleet.database_url)
        bare_env = {**fleet.env, "FLEET_PROMPT_FILE": "/dev/null"}
        bare_agent = bare_seconds(list(scripted_command("fix-all")), repo, bare_env)
        bare_tests = bare_seconds(["sh", "-c", SAMPLE_TEST_CMD], repo, bare_env)
    wall = finished - started
    row = report["agents"][0]
    overhead = parts["median_attempt_s"] - bare_agent - bare_tests
    # Per task, from the sums: every second an attempt took beyond its bare agent and one bare test run, which
    # includes the task's baseline run (once per base commit) and any rerun of failing tests.
    per_task = (parts["total_attempt_s"] - parts["attempts"] * (bare_agent + bare_tests)) / args.tasks
    result: dict[str, Any] = {
        "tasks": args.tasks,
        "samples": args.samples,
        "concurrency": args.concurrency,
        "seconds_to_queue": round(queued - started, 1),
        "seconds_total": round(wall, 1),
        "tasks_per_minute": round(args.tasks / (wall / 60), 2),
        "attempts_per_minute": round(args.tasks * args.samples / (wall / 60), 2),
        "pass_at_1": row["pass_at"].get("1"),
        "solved": f"{row['solved']}/{row['finished']}",
        **parts,
        "bare_agent_s": round(bare_agent, 3),
        "bare_tests_s": round(bare_tests, 3),
        "fleet_overhead_per_attempt_s": round(overhead, 3),
        "fleet_overhead_per_task_s": round(per_task, 3),
        "swe_bench_harness": HARNESS,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"eval-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
