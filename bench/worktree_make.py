"""What a new worktree slot costs the machine: `git worktree add` against Fleet's own (workers/worktree_make.py).

    python bench/worktree_make.py [--slots 100] [--rounds 3]

A worker's first wave makes one checkout per slot, and the wave's starts wait for them. Each round makes --slots
worktrees of a one-file repository (the fleet benchmark's) each way, alternately, on a fresh mirror, and prints the
CPU the whole machine spent per worktree (/proc/stat: git's child processes and the kernel's work count). Run it on
a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floor import machine_seconds, make_repo  # noqa: E402  bench/floor.py, beside this script

from system.files import remove_tree  # noqa: E402
from system.git import git  # noqa: E402
from system.mirror import ensure_mirror  # noqa: E402
from workers.worktree_make import add_by_git, make_worktree  # noqa: E402


def per_worktree(make: Callable[[Path, Path, str], object], work: Path, slots: int, sha: str) -> float:
    """Milliseconds of the machine's CPU per worktree, slots of them made one after the other on a new mirror."""
    mirror = ensure_mirror(work / "mirrors", "repo", str(work / "repo"), sha).resolve()
    pool = work / "pool"
    pool.mkdir()
    started = machine_seconds()
    for n in range(slots):
        make(mirror, pool / f"slot-{n}", sha)
    spent = machine_seconds() - started
    remove_tree(pool)
    remove_tree(work / "mirrors")
    return 1000 * spent / slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-worktree-make-") as tmp:
        work = Path(tmp)
        make_repo(work / "repo")
        sha = git("rev-parse", "HEAD", cwd=work / "repo").strip()
        for _ in range(args.rounds):
            added = per_worktree(add_by_git, work, args.slots, sha)
            made = per_worktree(make_worktree, work, args.slots, sha)
            print(f"git worktree add {added:6.2f} ms   Fleet's {made:6.2f} ms   ({made / added:.2f}x) per worktree")


if __name__ == "__main__":
    main()
