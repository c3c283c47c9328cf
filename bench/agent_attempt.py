"""What one sandboxed agent attempt costs the machine around its agent: the sandbox, its git dir, the cleanup.

    python bench/agent_attempt.py [--rounds 150] [--pairs 3] [--baseline DIR] [--git memory|disk]

Each round builds the attempt's sandbox (workers/agent_sandbox.py build_sandbox), runs one agent command in it
and deletes the attempt folder, as the worker does; timed by the CPU the whole machine spent (/proc/stat), so
bwrap's and git's work and the file system's count. Two agents: `edit` writes one file (the fleet benchmark's
agent), `git` also runs git status, commit and reset in its git dir (what coding agents do). `--git memory` (the
default) gives the agent its git dir in the sandbox's memory, as an agent whose whole run is one command gets it;
`--git disk` in the attempt folder, as the llm agent (a sandbox per command) gets it. With --baseline (a
checkout of another commit, e.g. from `git worktree add`), each pair runs that checkout's code and this one's in
turn, in fresh processes. Prints one JSON line per run and writes them to bench/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENTS = {
    "edit": "echo fixed > state.txt",
    "git": "git status --porcelain >/dev/null; echo fixed > state.txt; git commit -qam fix; git reset -q --hard HEAD~1",
}


GIT_HELP = "where this checkout puts the agent's git dir: the sandbox's memory (an agent of one command) or the disk"


def machine_seconds() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def one_run(work: Path, agent: str, rounds: int, git_in_memory: bool) -> dict[str, float]:
    """Runs in a process whose PYTHONPATH names the code measured."""
    from system.git import git
    from system.mirror import ensure_mirror
    from system.process import run_process
    from system.sandbox import toolchain_roots
    from workers.agent_sandbox import SandboxPlan, build_sandbox
    from workers.worktree import WorktreePool

    source = work / "source"
    source.mkdir()
    (source / "state.txt").write_text("broken\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "base")):
        git("-c", "user.name=b", "-c", "user.email=b@b", *args, cwd=source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    mirror = ensure_mirror(work / "mirrors", "bench", str(source), sha)
    readable = toolchain_roots(os.environ.get("PATH", os.defpath), ["git"])
    with WorktreePool(work / "pool", mirror, size=1).lease(sha) as worktree:

        def attempt(n: int) -> None:
            folder = work / "attempts" / str(n)
            folder.mkdir(parents=True)
            plan = SandboxPlan(worktree.path, worktree.gitdir, mirror, sha, folder, folder / "home", (work,), readable)
            if "git_in_memory" in {f.name for f in dataclasses.fields(SandboxPlan)}:  # a checkout that has it
                plan = dataclasses.replace(plan, git_in_memory=git_in_memory)
            sandbox = build_sandbox(plan)
            argv = [*sandbox.wrapper, "sh", "-c", AGENTS[agent]]
            done = run_process(argv, cwd=worktree.path, env={**os.environ, **sandbox.env}, timeout=60)
            if done.exit_code != 0:
                raise SystemExit(f"the agent failed: {done.output}")
            shutil.rmtree(folder)

        attempt(0)  # warm: the base's pack is made once
        started, machine = time.monotonic(), machine_seconds()
        for n in range(1, rounds + 1):
            attempt(n)
        wall, cpu = time.monotonic() - started, machine_seconds() - machine
    return {"machine_ms": round(1000 * cpu / rounds, 2), "wall_ms": round(1000 * wall / rounds, 2)}


def spawned(code: Path, agent: str, rounds: int, git: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="fleet-attempt-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(code)}
        argv = [sys.executable, __file__, "--one", agent, "--rounds", str(rounds), "--work", tmp, "--git", git]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=code).stdout
    return {"code": "this checkout" if code == ROOT else str(code), "agent": agent, **json.loads(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--baseline", default="", help="another commit's checkout, run in turn with this one")
    parser.add_argument("--git", choices=("memory", "disk"), default="memory", help=GIT_HELP)
    parser.add_argument("--one", choices=sorted(AGENTS), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(Path(args.work), args.one, args.rounds, args.git == "memory")))
        return
    codes = [Path(args.baseline).resolve(), ROOT] if args.baseline else [ROOT]
    rows = []
    for _ in range(args.pairs):
        for agent in AGENTS:
            for code in codes:
                rows.append(spawned(code, agent, args.rounds, args.git))
                print(json.dumps(rows[-1]), flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"agent_attempt-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
