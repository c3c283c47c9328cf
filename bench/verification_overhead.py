"""Verification overhead on a real project's suite: Fleet's verify_diff on a baseline cache hit vs the bare command.

    python bench/verification_overhead.py [--repetitions 20] [--warmup 2]

The project is iniconfig 2.3.1 (tests/data/iniconfig, 54 tests) with the bug the end-to-end tests inject, and
the diff is its honest fix. Both sides run the same code, on this machine, in this process, interleaved:
  bare   the repository's test command, `/bin/sh -c CMD`, in a checkout that already has the fix applied.
  fleet  what a worker does on a baseline cache hit: lease a pooled worktree (reset to the base), then
         verify_diff: apply the diff, restore protected paths, pin pytest, run the suite once with a JUnit
         report, parse it, judge against the cached baseline (a JSON round trip, as from the database),
         scan flags and write the feedback digest; then release the worktree.
Prints a table and writes JSON to bench/results/ (gitignored). Target: fleet/bare median at most 1.3x.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fixture project's builder lives with the tests that use it too

from db.lifecycle import Verdict  # noqa: E402
from system.git import git  # noqa: E402
from system.mirror import ensure_mirror  # noqa: E402
from system.sandbox import bwrap_missing  # noqa: E402
from tests.e2e_verification.realproject import INI_TEST_CMD, make_iniconfig_repo  # noqa: E402
from verification.runner import TestRun  # noqa: E402
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff  # noqa: E402
from workers.agents.scripted import SCRIPT_EDITS, apply_edits  # noqa: E402
from workers.worktree import WorktreePool  # noqa: E402

TARGET_RATIO = 1.3
Sample = tuple[float, float]  # (wall seconds, CPU seconds of this process and its children)
RESULTS = ROOT / "bench" / "results"


def honest_diff(repo: Path, scratch: Path) -> str:
    """The ini-fix agent's diff against the base, made in a throwaway clone."""
    git("clone", "--quiet", str(repo), str(scratch), cwd=repo.parent)
    apply_edits(SCRIPT_EDITS["ini-fix"], scratch)
    return git("diff", cwd=scratch)


def fixed_checkout(repo: Path, dest: Path, diff: str) -> Path:
    """A plain clone of the base with the diff applied: where the bare command runs."""
    git("clone", "--quiet", str(repo), str(dest), cwd=repo.parent)
    git("apply", "-", cwd=dest, input=diff)
    return dest


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object]) -> tuple[Sample, object]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    value = fn()
    return (time.perf_counter() - wall, cpu_seconds() - cpu), value


def bare_run(checkout: Path) -> Callable[[], Sample]:
    def run() -> Sample:
        argv = ["/bin/sh", "-c", INI_TEST_CMD]
        sample, done = timed(lambda: subprocess.run(argv, cwd=checkout, capture_output=True, check=False))
        assert isinstance(done, subprocess.CompletedProcess)
        if done.returncode != 0:
            raise SystemExit(f"the bare test command failed:\n{done.stdout.decode()}{done.stderr.decode()}")
        return sample

    return run


def fleet_run(
    pool: WorktreePool, base: str, diff: str, spec: VerifySpec, cached: dict[str, Any], work: Path
) -> tuple[Callable[[], Sample], list[float]]:
    suite: list[float] = []

    def verify() -> VerificationResult:
        baseline = TestRun.from_json(json.loads(json.dumps(cached)))
        with pool.lease(base) as checkout:
            return verify_diff(checkout.path, diff, spec, baseline, work / "candidate")

    def run() -> Sample:
        sample, result = timed(verify)
        assert isinstance(result, VerificationResult)
        if result.verdict is not Verdict.PASSED:
            raise SystemExit(f"verification did not pass: {result.verdict.value}: {result.reasons}")
        suite.append(result.duration)
        return sample

    return run, suite


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "min": ordered[0],
        "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "stdev": statistics.stdev(times) if len(times) > 1 else 0.0,
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown",
    )
    return {
        "cpu_model": model,
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git("--version", cwd=ROOT).strip(),
        "pytest": subprocess.run(
            [sys.executable, "-m", "pytest", "--version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def measure(repetitions: int, warmup: int, work: Path) -> dict[str, Any]:
    repo = work / "iniconfig"
    with contextlib.redirect_stdout(io.StringIO()):  # the builders print their edits
        base = make_iniconfig_repo(repo)
        diff = honest_diff(repo, work / "scratch")
    spec = VerifySpec(test_cmd=INI_TEST_CMD, timeout=300.0)
    mirror = ensure_mirror(work / "mirrors", "iniconfig", str(repo), base)
    pool = WorktreePool(work / "pool", mirror, size=1)
    with pool.lease(base) as checkout:
        baseline = run_baseline(checkout.path, spec, work / "baseline")
    bare = bare_run(fixed_checkout(repo, work / "bare", diff))
    fleet, suite = fleet_run(pool, base, diff, spec, baseline.to_json(), work)
    for _ in range(warmup):
        bare(), fleet()
    suite.clear()
    wall: dict[str, list[float]] = {"bare": [], "fleet": []}
    cpu: dict[str, list[float]] = {"bare": [], "fleet": []}
    for i in range(repetitions):  # interleaved, alternating which goes first, so drift hits both alike
        order = [("bare", bare), ("fleet", fleet)] if i % 2 == 0 else [("fleet", fleet), ("bare", bare)]
        for name, run in order:
            seconds, cpu_used = run()
            wall[name].append(seconds)
            cpu[name].append(cpu_used)
    return {
        "wall": wall,
        "cpu": cpu,
        "suite_inside_fleet": suite,
        "baseline_tests": len(baseline.results),
        "baseline_failures": baseline.failures,
        "sandbox": bwrap_missing() is None,
    }


def report(data: dict[str, Any]) -> dict[str, Any]:
    stats = {f"{kind}_{name}": summary(times) for kind in ("wall", "cpu") for name, times in data[kind].items()}
    stats["wall_suite_inside_fleet"] = summary(data["suite_inside_fleet"])
    # Paired within each verification, so the machine's load mostly cancels out: Fleet's own work alone.
    pairs = zip(data["wall"]["fleet"], data["suite_inside_fleet"], strict=True)
    stats["wall_fleet_own_work"] = summary([fleet - suite for fleet, suite in pairs])
    return {
        "stats": stats,
        "ratio_wall_median": stats["wall_fleet"]["median"] / stats["wall_bare"]["median"],
        "ratio_wall_min": stats["wall_fleet"]["min"] / stats["wall_bare"]["min"],
        "ratio_cpu_median": stats["cpu_fleet"]["median"] / stats["cpu_bare"]["median"],
    }


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"machine: {m['cpu_model']}, nproc={m['nproc']}, Python {m['python']}, {m['pytest']}, {m['git']}")
    print(f"load average before/after: {result['load_before']} / {result['load_after']}")
    print(f"project: iniconfig 2.3.1, {result['baseline_tests']} tests; sandbox: {result['sandbox']}")
    print(f"repetitions: {result['repetitions']} (+{result['warmup']} warm-up), interleaved")
    print(f"{'':36}{'median':>9}{'mean':>9}{'min':>9}{'p90':>9}{'stdev':>9}")
    labels = {
        "wall_bare": "bare test command (wall s)",
        "wall_fleet": "fleet verify, cache hit (wall s)",
        "wall_suite_inside_fleet": "  of which the suite run (wall s)",
        "wall_fleet_own_work": "  of which Fleet's own work (wall s)",
        "cpu_bare": "bare test command (CPU s)",
        "cpu_fleet": "fleet verify, cache hit (CPU s)",
    }
    for key, label in labels.items():
        s = result["stats"][key]
        print(f"{label:36}" + "".join(f"{s[c]:9.3f}" for c in ("median", "mean", "min", "p90", "stdev")))
    verdict = "OK" if result["ratio_wall_median"] <= TARGET_RATIO else "OVER TARGET"
    print(
        f"ratio fleet/bare: wall median {result['ratio_wall_median']:.2f}x, wall min {result['ratio_wall_min']:.2f}x, "
        f"CPU median {result['ratio_cpu_median']:.2f}x (target <= {TARGET_RATIO}x on the wall median: {verdict})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        data = measure(args.repetitions, args.warmup, Path(tmp))
    result = {
        "benchmark": "verification_overhead",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/verification_overhead.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "repetitions": args.repetitions,
        "warmup": args.warmup,
        "test_command": INI_TEST_CMD,
        **data,
        **report(data),
    }
    print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"verification_overhead-{result['when'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
