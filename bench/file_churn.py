"""What making a file costs beside writing one in place, on the disk of a folder (default: the system's temp folder).

    python bench/file_churn.py [--folder DIR] [--files 3000]

A worker writes small files per ticket: each worktree slot's clean marker (workers/worktree.py) and the outcome
journal's entries (workers/journal.py). Both are now rewritten in place rather than made and deleted. On ext4 without
a journal (common on cloud machines), the kernel looks for a free inode past the recently deleted ones, reading
their blocks, so a file made where many were deleted costs far more than a write into one that exists. Prints the
CPU time (user + system, this process) per file of three ways, side by side, three rounds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

DATA = b"x" * 200  # about a clean marker's size


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


IN_FLIGHT = 100  # files made and not yet deleted at any time, as a worker's slots' have


def made_and_deleted(folder: Path, n: int) -> None:
    """What a ticket did before: a new file, deleted once IN_FLIGHT more are made."""
    (folder / f"made-{n}").write_bytes(DATA)
    (folder / f"made-{n - IN_FLIGHT}").unlink(missing_ok=True)


def emptied_and_written(folder: Path, n: int) -> None:
    """One file kept, emptied and written again (O_TRUNC): a block freed and another taken per write."""
    (folder / "emptied").write_bytes(DATA)


def written_over(folder: Path, n: int) -> None:
    """What a ticket does now: one file kept and written over from its start (workers/journal.py _write_over)."""
    handle = os.open(folder / "kept", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(handle, DATA, 0)
    finally:
        os.close(handle)


def per_file(way: Callable[[Path, int], None], folder: Path, files: int) -> float:
    before = cpu_seconds()
    for n in range(files):
        way(folder, n)
    return (cpu_seconds() - before) / files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--files", type=int, default=3000)
    args = parser.parse_args()
    ways = (made_and_deleted, emptied_and_written, written_over)
    with tempfile.TemporaryDirectory(prefix="fleet-file-churn-", dir=args.folder) as tmp:
        rounds = [[per_file(way, Path(tmp), args.files) for way in ways] for _ in range(3)]
    for made, emptied, over in rounds:
        print(
            f"made and deleted {made * 1e6:5.0f} us   emptied and written {emptied * 1e6:5.0f} us   "
            f"written over {over * 1e6:5.0f} us   (made / over: {made / max(over, 1e-9):.0f}x)"
        )


if __name__ == "__main__":
    main()
