"""The merge queue's throughput: 50 approved diffs touching overlapping files, landed through the queue.

    python bench/merge_queue.py [--diffs 50] [--pause 1.5] [--slots 8]

One real repository; 50 tickets whose scripted agents write real diffs: most add a module of their own, the rest
edit one of a few shared files (in places far enough apart to apply cleanly in any order), and a few of those pass
alone but fail on top of their neighbour's change (their test expects the neighbour's line untouched). The agents
and their verifications run once (embedded mode); then a person commits a PAUSE file to main, which makes the
suite sleep that long: on this two-core machine shared by several engineers the benchmark's verification is
mostly waiting, as a service's integration tests are, and says so. The same approved state is copied three times
and landed side by side, in the same shuffled approval order:
  serial        merge_slots 1: one entry verified at a time (what a queue without speculation does).
  speculative   merge_slots N, plain queue order (Zuul's dependent pipeline).
  aware         merge_slots N, conflict-aware: independent entries first, overlapping ones never stacked on an
                entry they overlap while it is still being verified.
Reports merges per minute (from the worker's start to the queue's end), builds verified, re-verifications (builds
beyond one per entry), ejections, and checks that main's tests pass at the final head. Writes JSON to
bench/results/. Target: speculative at least 3x the serial rate with 8 slots.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository builder lives with the tests that use it too

from db.models import MergeEntry  # noqa: E402
from tests.conftest import Fleet, make_test_fleet  # noqa: E402
from tests.core import merge_repo as mr  # noqa: E402
from workers.agents.scripted import SAMPLE_TEST_CMD  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SHARED_FILES = 4
SLOTS_PER_FILE = 4
GAP = 8  # lines between two slots of a shared file: git applies each change without the others' context
RISKY = {(1, 2), (2, 1), (3, 3)}  # (file, slot): passes alone, fails once the slot before it changed


def shared_text(values: dict[int, int]) -> str:
    lines = []
    for slot in range(SLOTS_PER_FILE):
        lines.append(f"SLOT_{slot} = {values.get(slot, 0)}\n")
        lines += [f"# padding {slot}.{n}\n" for n in range(GAP)]
    return "".join(lines)


def diffs(count: int) -> list[tuple[str, str]]:
    """(title, agent command) per ticket: shared-file edits first, then modules of their own."""
    found = []
    for f in range(SHARED_FILES):
        for slot in range(SLOTS_PER_FILE):
            value = 100 * (f + 1) + slot
            test = f"import shared{f}\\n\\n\\ndef test_s{f}_{slot}():\\n    assert shared{f}.SLOT_{slot} == {value}\\n"
            if (f, slot) in RISKY:
                test += f"    assert shared{f}.SLOT_{slot - 1} == 0  # the neighbour's line, as it was\\n"
            text = shared_text({slot: value}).replace("\n", "\\n")
            command = mr.put(f"shared{f}.py", text, f"tests/test_s{f}_{slot}.py", test)
            found.append((f"Set slot {slot} of shared{f}", command))
    for i in range(count - len(found)):
        found.append((f"Add mod{i}", mr.put(*mr.module(f"mod{i}", i))))
    return found[:count]


def prepare(base: Path, count: int) -> tuple[Fleet, Path, list[int]]:
    """A Fleet whose `count` tickets all wait for review, and its target repository."""
    bare, _ = mr.make_target(base, extra={f"shared{f}.py": shared_text({}) for f in range(SHARED_FILES)})
    fleet = make_test_fleet(base, FLEET_AGENT_SANDBOX="false")
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits")
    tickets = []
    for title, command in diffs(count):
        [ticket] = fleet.submit("--repo", "shop", "--title", title, "--body", title, "--agent-cmd", command)
        tickets.append(int(ticket["id"]))
    fleet.run("up", "--until-idle", "--concurrency", "8", timeout=3600)
    waiting = [t for t in tickets if fleet.json("show", str(t))["status"] == "needs_review"]
    assert waiting == tickets, f"not every ticket was verified: {sorted(set(tickets) - set(waiting))}"
    return fleet, bare, tickets


def copy_for(mode: str, fleet: Fleet, bare: Path, base: Path) -> tuple[Fleet, Path]:
    """The approved state, copied: a home without caches (they name the original's paths) and its own target."""
    root = base / mode
    shutil.copytree(fleet.home, root / "home", ignore=shutil.ignore_patterns("worktrees", "mirrors", "broker"))
    target = root / "shop.git"
    shutil.copytree(bare, target)
    copy = make_test_fleet(root, FLEET_AGENT_SANDBOX="false")
    return copy, target


def land(mode: str, fleet: Fleet, target: Path, order: list[int], slots: int, aware: bool) -> dict[str, Any]:
    """Enqueue every ticket in order, run one worker until the queue is empty, and measure."""
    fleet.run("repo", "update", "shop", "--path", str(target), "--merge-slots", str(slots),
              "--merge-conflict-aware" if aware else "--no-merge-conflict-aware")  # fmt: skip
    for ticket in order:
        fleet.run("merge", "enqueue", str(ticket))
    log = (fleet.tmp / "worker.log").open("w")
    started = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-m", "fleet", "up", "--concurrency", str(slots + 2)], env=fleet.env,
                              cwd=fleet.tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        while live(fleet):
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        log.close()
    rows = entries(fleet)
    merged = sum(e["status"] == "merged" for e in rows)
    builds = sum(e["builds"] for e in rows)
    head = mr.git("rev-parse", "main", cwd=target).strip()
    return {
        "mode": mode,
        "slots": slots,
        "conflict_aware": aware,
        "seconds": round(elapsed, 1),
        "merged": merged,
        "ejected": sum(e["status"] == "ejected" for e in rows),
        "builds": builds,
        "reverifications": builds - sum(1 for e in rows if e["builds"]),
        "merges_per_minute": round(60 * merged / elapsed, 2),
        "main_green": mr.suite_passes_at(target, head, fleet.tmp),
    }


def live(fleet: Fleet) -> bool:
    return any(e["status"] not in ("merged", "ejected") for e in entries(fleet))


def entries(fleet: Fleet) -> list[dict[str, Any]]:
    db = fleet.db()
    try:
        with db.session() as s:
            return [{"status": e.status, "builds": e.builds} for e in s.query(MergeEntry)]
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffs", type=int, default=50)
    parser.add_argument("--pause", type=float, default=1.5, help="Seconds the benchmark repository's suite waits.")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-merge-bench-") as tmp:
        base = Path(tmp)
        t0 = time.monotonic()
        fleet, bare, tickets = prepare(base, args.diffs)
        print(f"{len(tickets)} tickets verified and waiting for review in {time.monotonic() - t0:.0f} s", flush=True)
        mr.human_push(base / "human", "PAUSE", f"{args.pause}\n")
        order = random.Random(16).sample(tickets, len(tickets))
        runs = []
        for mode, slots, aware in (("serial", 1, False), ("speculative", args.slots, False),
                                   ("aware", args.slots, True)):  # fmt: skip
            copy, target = copy_for(mode, fleet, bare, base)
            runs.append(land(mode, copy, target, order, slots, aware))
            print(json.dumps(runs[-1]), flush=True)
    report(runs, args)


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    by = {r["mode"]: r for r in runs}
    speedup = by["speculative"]["merges_per_minute"] / by["serial"]["merges_per_minute"]
    saved = by["speculative"]["reverifications"] - by["aware"]["reverifications"]
    header = ("mode", "slots", "s", "merged", "ejected", "builds", "re-verif", "/min")
    row = "{:<12} {:>5} {:>7} {:>6} {:>7} {:>6} {:>8} {:>7}"
    print("\n" + row.format(*header))
    cells = ("mode", "slots", "seconds", "merged", "ejected", "builds", "reverifications", "merges_per_minute")
    for r in runs:
        print(row.format(*(r[c] for c in cells)))
    aware = by["aware"]["merges_per_minute"] / by["serial"]["merges_per_minute"]
    print(f"speculative / serial: {speedup:.2f}x (target >= 3x); aware / serial: {aware:.2f}x; "
          f"conflict-aware ordering saved {saved} re-verification(s)")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"merge_queue-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "speedup": speedup, "saved": saved}, indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
