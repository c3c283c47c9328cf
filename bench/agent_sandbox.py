"""What the agent sandbox costs: the per-attempt git dir, and bwrap's start on every agent command.

    python bench/agent_sandbox.py [--rounds 20] [--files 5000]

Two repositories: the demo's sample (a handful of files) and a generated one with --files files. For each:
  gitdir   make_agent_gitdir: one `git pack-objects` of the base commit from the mirror, plus a few small files
           (the cost paid once per attempt, before the agent starts).
  sandbox  build_sandbox: the gitdir plus the folders and the argv (everything Fleet adds per attempt).
Then per command: `true` started directly, inside the sandbox as it was before the hardening (`--ro-bind / /`,
root's capabilities, no seccomp: the old figures), and inside today's hardened sandbox (own user namespace,
no capabilities, seccomp filter, allow-listed view), side by side in one run.
Prints medians in milliseconds as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from system.git import git
from system.mirror import ensure_mirror
from system.process import run_process
from system.sandbox import toolchain_roots
from workers.agent_git import make_agent_gitdir
from workers.agent_sandbox import SandboxPlan, build_sandbox
from workers.agents.scripted import write_sample_repo
from workers.worktree import WorktreePool, owning_gitdir


def generated_repo(path: Path, files: int) -> None:
    for n in range(files):
        target = path / f"pkg{n % 50}" / f"mod{n}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"VALUE = {n}\n" * 20)
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-qm", "base", cwd=path)


def median_ms(action: Callable[[int], object], rounds: int) -> float:
    times = []
    for n in range(rounds):
        started = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


def measure(work: Path, source: Path, rounds: int) -> dict[str, float]:
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    mirror = ensure_mirror(work / "mirrors", f"bench-{source.name}", str(source), sha)
    with WorktreePool(work / "pool" / source.name, mirror, size=1).lease(sha) as worktree:
        gitdir = owning_gitdir(worktree.path, mirror)
        assert gitdir is not None

        def one_gitdir(n: int) -> None:
            make_agent_gitdir(mirror, gitdir, sha, work / "gitdirs" / f"{source.name}-{n}")

        def plan(attempt: Path) -> SandboxPlan:
            readable = toolchain_roots(os.environ.get("PATH", os.defpath))
            return SandboxPlan(worktree.path, gitdir, mirror, sha, attempt, work / "home", (work,), readable)

        def one_sandbox(n: int) -> None:
            build_sandbox(plan(work / "attempts" / f"{source.name}-{n}"))

        wrapper = list(build_sandbox(plan(work / "attempt")).wrapper)
        before = legacy_wrapper(worktree.path, work)
        return {
            "gitdir_ms": median_ms(one_gitdir, rounds),
            "sandbox_ms": median_ms(one_sandbox, rounds),
            "command_direct_ms": median_ms(lambda _: subprocess.run(["true"], check=True), rounds),
            "command_before_hardening_ms": median_ms(lambda _: subprocess.run([*before, "true"], check=True), rounds),
            "command_sandboxed_ms": median_ms(lambda _: started([*wrapper, "true"], worktree.path), rounds),
        }


def started(argv: list[str], cwd: Path) -> None:
    """A sandboxed command, started as the worker starts it (only run_process can)."""
    result = run_process(argv, cwd=cwd, env={"PATH": os.defpath}, timeout=60)
    assert result.ok, result.output


def legacy_wrapper(worktree: Path, hidden: Path) -> list[str]:
    """The sandbox as it was before the hardening, for the side-by-side figure."""
    exe = shutil.which("bwrap") or "bwrap"
    return [
        exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", str(hidden),
        "--bind", str(worktree), str(worktree), "--unshare-pid", "--die-with-parent", "--new-session",
        "--chdir", str(worktree), "--unshare-net",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        raise SystemExit("bwrap is not installed")
    with tempfile.TemporaryDirectory(prefix="fleet-sandbox-bench-") as tmp:
        work = Path(tmp)
        write_sample_repo(work / "sample")
        generated_repo(work / "generated", args.files)
        report = {name: measure(work, work / name, args.rounds) for name in ("sample", "generated")}
    print(json.dumps({"files": args.files, "rounds": args.rounds, **report}, indent=2))


if __name__ == "__main__":
    main()
