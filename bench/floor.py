"""What one ticket of the fleet benchmark costs the machine outside Fleet's own Python: its processes, timed alone.

    python bench/floor.py [--runs 200] [--fleet-ms 0]

A ticket of bench/fleet_bench.py runs two sandboxed commands (its agent and its tests, each in the bubblewrap
sandbox of system/sandbox.py, started by system/process.py) and eight git commands (a reset and a clean of
each of its two checkouts, the status, update-index and diff that take the agent's diff, and the apply that checks
and applies the patch), plus the agent's and the test's own shell commands. Each is run here `--runs` times the way the
worker runs it, one after the other, and timed by the CPU the whole machine spent (/proc/stat), so a sandbox's
kernel work (namespaces made and torn down) counts. Their sum is the floor a ticket costs whatever Fleet does; with
Fleet's own CPU per ticket (`--fleet-ms`, from fleet_bench.py) it says how many tickets a second the machine's
cores can carry, and so the best makespan / ideal the wide row (4,000 tickets x 5 s, 400 slots) can reach.
Run it on a quiet machine: every process's CPU counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from system.git import git  # noqa: E402
from system.process import run_process  # noqa: E402
from system.sandbox import View, bwrap_missing, confine  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
AGENT = "echo start $(date +%s.%N); sleep 0; echo fixed > state.txt; echo end $(date +%s.%N)"  # fleet_bench's, no sleep
TEST = "grep -q fixed state.txt"
DIFF = "diff --git a/state.txt b/state.txt\n--- a/state.txt\n+++ b/state.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"


def machine_seconds() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / CLK_TCK


def timed(step: Callable[[], object], runs: int) -> float:
    """Milliseconds of the whole machine's CPU per run of step."""
    step()  # warm: the first run pays for caches
    started = machine_seconds()
    for _ in range(runs):
        step()
    return 1000 * (machine_seconds() - started) / runs


def make_repo(path: Path) -> None:
    path.mkdir()
    (path / "state.txt").write_text("broken\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "base")):
        git("-c", "user.name=b", "-c", "user.email=b@b", *args, cwd=path)


def steps(repo: Path) -> dict[str, tuple[int, Callable[[], object]]]:
    """(times per ticket, one run) of each process a ticket starts."""
    sandboxed = confine(View(workdir=repo, writable=(repo,)))

    def run(argv: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(argv, cwd=repo, check=True, capture_output=True)

    def confined(command: str) -> Callable[[], object]:
        def step() -> None:
            result = run_process([*sandboxed, "/bin/sh", "-c", command], cwd=repo, env={"PATH": os.defpath}, timeout=60)
            assert result.ok, result.output

        return step

    return {
        "a process spawned from Python (`true`), for scale": (0, run(["true"])),
        "the agent, sandboxed (bwrap + its shell)": (1, confined(AGENT)),
        "the tests, sandboxed (bwrap + its shell)": (1, confined(TEST)),
        "git reset --hard": (2, lambda: git("reset", "--hard", "--quiet", cwd=repo)),
        "git clean -ffdx": (2, lambda: git("clean", "-ffdxq", cwd=repo)),
        "git status --porcelain": (1, lambda: git("--no-optional-locks", "status", "--porcelain=v1", "-z", cwd=repo)),
        "git update-index": (1, lambda: git("update-index", "--add", "-z", "--stdin", cwd=repo, input="state.txt\0")),
        "git diff --cached": (1, lambda: git("diff", "--cached", "--binary", "HEAD", "--", cwd=repo)),
        "git apply --numstat --index --apply": (1, applying(repo)),
    }


def applying(repo: Path) -> Callable[[], object]:
    """Checks and applies the diff, then takes it back at the next run (-R): each run applies a patch."""
    forward = [True]

    def step() -> None:
        back = () if forward[0] else ("-R",)
        git("apply", "--numstat", "-z", "--index", *back, "--apply", "-", cwd=repo, input=DIFF)
        forward[0] = not forward[0]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--fleet-ms", type=float, default=0.0, help="Fleet's own CPU per ticket, from fleet_bench")
    args = parser.parse_args()
    if bwrap_missing():
        sys.exit(f"bench/floor.py: {bwrap_missing()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleet-floor-") as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo)
        for name, (per_ticket, step) in steps(repo).items():
            rows.append((name, per_ticket, timed(step, args.runs)))
    floor = sum(per_ticket * ms for _, per_ticket, ms in rows)
    cores = os.cpu_count() or 1
    per_ticket = floor + args.fleet_ms
    rate = cores * 1000 / per_ticket
    best = max(1.0, (4000 / rate) / (4000 * 5 / 400))
    for name, times, ms in rows:
        print(f"{ms:7.2f} ms x {times}  {name}")
    print(f"{floor:7.2f} ms  a ticket's processes outside Fleet (machine CPU)")
    print(f"{per_ticket:7.2f} ms  with Fleet's own {args.fleet_ms:g} ms: at most {rate:.0f} tickets/s on {cores} cores")
    print(f"the wide row (4,000 tickets x 5 s, 400 slots) can reach makespan / ideal {best:.2f} at best")
    report = {"rows": [{"what": n, "per_ticket": t, "machine_ms": round(m, 3)} for n, t, m in rows]}
    report |= {"floor_ms": round(floor, 2), "fleet_ms": args.fleet_ms, "tickets_per_second": round(rate, 1)}
    out = ROOT / "bench" / "results" / f"floor-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report | {"wide_best_over_ideal": round(best, 2)}, indent=2))
    print(f"results written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
