"""A diff over FLEET_MAX_DIFF_BYTES ends its attempt as an error naming the size; nothing of it is stored or kept
in the mirror, the honest ticket beside it still passes, and `fleet gc` removes what attempts left behind."""

from __future__ import annotations

import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from db.models import Attempt
from system.git import git
from tests.core.conftest import Fleet, scripted

ADD = "tests/test_calc.py::test_add"
DIV = "tests/test_calc.py::test_div"
LIMIT = 2**20
SPARSE_BYTES = 300 * 2**30  # nothing may read it: hashing 300 GiB would take many minutes
RANDOM = f"import random; print('writing'); open('big.bin', 'wb').write(random.Random(7).randbytes({LIMIT + 1}))"
SPARSE = f"print('writing'); open('sparse.bin', 'wb').truncate({SPARSE_BYTES})"


def python_agent(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def mirror_objects(mirror: Path) -> dict[str, int]:
    """Every object in the mirror, loose or packed, with its size."""
    listing = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objectsize)", cwd=mirror)
    return {sha: int(size) for sha, size in (line.split() for line in listing.splitlines())}


def blob_id(data: bytes, tmp: Path) -> str:
    """The id git gives data as a blob, computed on a copy outside every repository."""
    copy = tmp / "copy-for-hashing"
    copy.write_bytes(data)
    return git("hash-object", "--no-filters", str(copy), cwd=tmp).strip()


def only_attempt(view: dict[str, Any]) -> dict[str, Any]:
    [attempt] = [a for run in view["runs"] for a in run["attempts"]]
    return attempt


def submit(fleet: Fleet, title: str, agent_cmd: str, *extra: str) -> int:
    [ticket] = fleet.submit("--repo", "calc", "--title", title, "--agent-cmd", agent_cmd, "--attempts", "1", *extra)
    return int(ticket["id"])


def test_an_oversized_diff_is_an_error_that_leaves_no_trace_and_gc_cleans_up(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_MAX_DIFF_BYTES"] = str(LIMIT)
    fleet.env["FLEET_MAX_FILE_MB"] = "0"  # the sparse file is made: the diff's limit is what holds
    fleet.sample_repo()
    first = submit(fleet, "honest add", scripted("fix-add"), "--target", ADD)
    fleet.up()  # makes the mirror, so that everything after can be compared with it
    mirror = fleet.home / "mirrors" / "repo-1.git"
    before = mirror_objects(mirror)

    big = submit(fleet, "a random file", python_agent(RANDOM))
    sparse = submit(fleet, "a sparse file", python_agent(SPARSE))
    honest = submit(fleet, "honest div", scripted("fix-div"), "--target", DIV)
    fleet.up()

    shown = {t: fleet.json("show", str(t)) for t in (first, big, sparse, honest)}
    assert {t: v["status"] for t, v in shown.items()} == {
        first: "needs_review",
        big: "error",
        sparse: "error",
        honest: "needs_review",
    }
    limit = f"over FLEET_MAX_DIFF_BYTES ({LIMIT:,})"
    assert shown[big]["reason"] == f"the diff is too large: the changed files add {LIMIT + 1:,} bytes, {limit}"
    assert shown[sparse]["reason"] == f"the diff is too large: the changed files add {SPARSE_BYTES:,} bytes, {limit}"
    for ticket in (big, sparse):
        attempt = only_attempt(shown[ticket])
        assert attempt["verdict"] == "error" and attempt["error"] == shown[ticket]["reason"]
        assert attempt["verification"]["reasons"] == [shown[ticket]["reason"]]

    with fleet.db().session() as s:
        assert s.scalar(select(func.max(func.length(Attempt.diff)))) <= LIMIT
        diffs = {ticket: diff for ticket, diff in s.execute(select(Attempt.ticket_id, Attempt.diff))}
        times = {a.ticket_id: (a.started_at, a.agent_finished_at) for a in s.scalars(select(Attempt))}
    assert diffs[big] == diffs[sparse] == ""
    started, diffed = times[sparse]
    assert started is not None and diffed is not None
    assert (diffed - started).total_seconds() < 20, "the sparse file was read"

    after = mirror_objects(mirror)
    added = {sha: size for sha, size in after.items() if sha not in before}
    assert sum(added.values()) < 64 * 1024, added  # the honest verification's patched calc.py, nothing more
    random_bytes = random.Random(7).randbytes(LIMIT + 1)
    assert blob_id(random_bytes, fleet.tmp) not in after
    assert max(after.values()) < LIMIT

    # `fleet gc`: attempt folders left behind, old junk in the mirror, old stored text.
    big_attempt, first_attempt = only_attempt(shown[big])["id"], only_attempt(shown[first])["id"]
    waiting = submit(fleet, "queued, not run", scripted("fix-add"))
    waiting_attempt = only_attempt(fleet.json("show", str(waiting)))["id"]
    attempts = fleet.home / "attempts"
    for attempt_id in (big_attempt, 99_999, waiting_attempt):
        (attempts / str(attempt_id) / "agent").mkdir(parents=True, exist_ok=True)
        (attempts / str(attempt_id) / "agent" / "left").write_bytes(b"x" * 100_000)
    junk = git("hash-object", "-w", "--stdin", cwd=mirror, input="an object from before the fix\n" * 40_000).strip()
    an_hour_ago = time.time() - 3600
    os.utime(mirror / "objects" / junk[:2] / junk[2:], (an_hour_ago, an_hour_ago))

    report = fleet.run("gc", "--older-than", "0").stdout.splitlines()
    assert report[0].startswith("attempt folders: removed 2 (")
    assert report[1].startswith("mirrors: pruned 1 (") and "0 bytes freed" not in report[1]
    assert report[2].startswith("stored attempt text: cleared 2 attempts finished over 0 days ago (")
    assert report[-1] == "sandboxes dead workers left: ended 0"
    assert sorted(p.name for p in attempts.iterdir()) == [str(waiting_attempt)]
    assert junk not in mirror_objects(mirror)
    with fleet.db().session() as s:
        cleared = {a.ticket_id: a for a in s.scalars(select(Attempt))}
        assert cleared[big].transcript == "" and cleared[big].verification is not None
        assert cleared[big].verification.verdict == "error"
        assert "+    return a + b" in cleared[first].diff and cleared[first].transcript  # awaiting review: kept
        assert cleared[first].id == first_attempt
    assert "+    return a / b" in fleet.json("review", "show", str(honest))["candidates"][0]["diff"]
