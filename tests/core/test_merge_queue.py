"""The merge queue end to end: real git repositories, the scripted agent's diffs, real workers.

Ten approved diffs against a moving target: two that conflict, one that passes alone and fails on top of another,
a human pushing to the target meanwhile; then a worker killed with -9 in the middle of a queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db import queries
from db.engine import Database
from db.models import MergeEntry
from system.branches import TargetError, remote_head
from system.settings import Settings
from tests.conftest import Fleet
from tests.core import merge_repo as mr
from workers import merge_git, merge_queue
from workers.agents.scripted import SAMPLE_TEST_CMD

A_TEST = "import shared\\n\\n\\ndef test_a():\\n    assert shared.LIMIT == 2\\n"
B_TEST = "import shared\\n\\n\\ndef test_b():\\n    assert shared.LIMIT == 3\\n"
B_LATER = (
    "limits_b.py",
    "MAX = 3\\n",
    "tests/test_b.py",
    "import limits_b\\n\\n\\ndef test_b():\\n    assert limits_b.MAX == 3\\n",
)
D_UTIL = "def other():\\n    return 7\\n"
D_TEST = "import util\\n\\n\\ndef test_d():\\n    assert not hasattr(util, 'helper')\\n"
C_MOD = "from util import helper\\n\\n\\ndef check():\\n    return helper() == 42\\n"
C_LATER = "def check():\\n    return True\\n"
C_TEST = "import mod_c\\n\\n\\ndef test_c():\\n    assert mod_c.check()\\n"


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def register(fleet: Fleet, bare: Path, slots: int) -> None:
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits",
              "--merge-slots", str(slots))  # fmt: skip


def submit(fleet: Fleet, title: str, command: str) -> int:
    [ticket] = fleet.submit("--repo", "shop", "--title", title, "--body", title, "--agent-cmd", command)
    return int(ticket["id"])


@contextlib.contextmanager
def running(worker: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A worker process that is killed when the block ends early (a failed wait must not leave it consuming)."""
    try:
        yield worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


_databases: dict[str, Database] = {}


def entries(fleet: Fleet) -> list[MergeEntry]:
    """The merge queue's rows (one engine per database for the whole run: polling must not open connections)."""
    if fleet.database_url not in _databases:
        _databases[fleet.database_url] = fleet.db()
    db = _databases[fleet.database_url]
    with db.session() as s:
        found = list(s.query(MergeEntry).order_by(MergeEntry.id))
        s.expunge_all()
        return found


def landed_once(bare: Path, tickets: list[int]) -> None:
    log = mr.git("log", "--format=%B", "main", cwd=bare)
    for ticket in tickets:
        assert log.count(f"Fleet ticket {ticket},") == 1, f"ticket {ticket} landed {log.count(f'ticket {ticket},')}x"


@pytest.mark.slow
def test_ten_approved_diffs_land_green_against_a_moving_target(fleet: Fleet) -> None:
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, human = mr.make_target(fleet.tmp, pause=0.5)
    start = mr.git("rev-parse", "main", cwd=bare).strip()
    register(fleet, bare, slots=4)
    a = submit(fleet, "Raise the limit to 2", mr.put("shared.py", "LIMIT = 2\\n", "tests/test_a.py", A_TEST))
    d = submit(
        fleet, "Drop util.helper", mr.put("util.py", "def other():\\n    return 7\\n", "tests/test_d.py", D_TEST)
    )
    ones = [submit(fleet, f"Add mod{i}", mr.put(*mr.module(f"mod{i}", i))) for i in (1, 2)]
    b = submit(
        fleet, "Raise the limit to 3", mr.put("shared.py", "LIMIT = 3\\n", "tests/test_b.py", B_TEST, later=B_LATER)
    )
    c = submit(fleet, "Use util.helper", mr.put("mod_c.py", C_MOD, "tests/test_c.py", C_TEST,
                                                later=("mod_c.py", C_LATER, "tests/test_c.py", C_TEST)))  # fmt: skip
    ones += [submit(fleet, f"Add mod{i}", mr.put(*mr.module(f"mod{i}", i))) for i in (3, 4, 5, 6)]
    fleet.up(concurrency=4)
    order = [a, d, ones[0], ones[1], b, c, *ones[2:]]
    assert {fleet.json("show", str(t))["status"] for t in order} == {"needs_review"}
    for ticket in order:
        fleet.run("merge", "enqueue", str(ticket))

    with running(fleet.popen("up", "--until-idle", "--concurrency", "4")) as worker:
        wait_for(lambda: any(e.status == "merged" for e in entries(fleet)))
        pushed = mr.human_push(human, "HUMAN.md", "a person was here\n")  # the queue's builds sit on the old head
        assert worker.wait(timeout=600) == 0

    by_ticket = {e.ticket_id: e for e in entries(fleet)}
    assert by_ticket[b].status == "ejected" and "shared.py" in by_ticket[b].reason
    assert f'ticket {a} "Raise the limit to 2"' in by_ticket[b].reason
    assert by_ticket[c].status == "ejected" and "tests/test_c.py" in by_ticket[c].reason
    assert f'ticket {d} "Drop util.helper"' in by_ticket[c].reason
    rest = [t for t in order if t not in (b, c)]
    unlanded = {t: (by_ticket[t].status, by_ticket[t].reason) for t in rest if by_ticket[t].status != "merged"}
    if unlanded:
        pytest.fail(f"entries that did not land: {unlanded}", pytrace=False)
    assert sum(e.builds for e in entries(fleet)) > len(order)  # ejections and the push re-verified entries
    with fleet.db().session() as s:
        retried = queries.load_ticket_tree(s, b).runs[0].attempts[-1]
        assert retried.number == 2 and f'ticket {a} "Raise the limit to 2"' in retried.feedback_in
        assert "no longer applies to shared.py" in retried.feedback_in
    assert fleet.json("show", str(b))["status"] == "needs_review"  # the new attempt, on the new head

    fleet.run("merge", "enqueue", str(b))
    fleet.run("merge", "enqueue", str(c))
    fleet.up(concurrency=4)
    assert [e.status for e in entries(fleet)][-2:] == ["merged", "merged"]
    assert merge_git.is_ancestor(bare, pushed, mr.git("rev-parse", "main", cwd=bare).strip())  # never forced over
    landed_once(bare, order)
    for sha in mr.commits_after(bare, start):
        assert mr.suite_passes_at(bare, sha, fleet.tmp), f"main's tests fail at {sha}"


@pytest.mark.slow
def test_a_worker_killed_mid_queue_loses_nothing_and_lands_nothing_twice(fleet: Fleet) -> None:
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp, pause=3.0)
    register(fleet, bare, slots=2)
    tickets = [submit(fleet, f"Add mod{i}", mr.put(*mr.module(f"mod{i}", i))) for i in range(1, 5)]
    fleet.up(concurrency=4)
    for ticket in tickets:
        fleet.run("merge", "enqueue", str(ticket))
    fleet.env["FLEET_LEASE_SECONDS"] = "4"  # so the dead worker's builds are seen as lapsed soon
    with running(fleet.popen("up", "--concurrency", "2")) as first:
        wait_for(lambda: any(e.lease_token for e in entries(fleet)))
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = [e.id for e in entries(fleet) if e.lease_token]
    fleet.up(concurrency=2)
    assert [e.status for e in entries(fleet)] == ["merged"] * 4
    assert killed and all(e.builds >= 1 for e in entries(fleet))
    landed_once(bare, tickets)
    assert len(mr.git("rev-list", "main", cwd=bare).split()) == 1 + 4


def test_the_target_moves_only_by_compare_and_swap(tmp_path: Path) -> None:
    bare, human = mr.make_target(tmp_path)
    old = mr.git("rev-parse", "main", cwd=bare).strip()
    mirror = tmp_path / "mirror.git"
    mr.git("clone", "-q", "--bare", str(bare), str(mirror), cwd=tmp_path)
    stamp = merge_git.Stamp(datetime(2026, 1, 1, tzinfo=UTC))
    diff = "--- a/shared.py\n+++ b/shared.py\n@@ -1 +1 @@\n-LIMIT = 1\n+LIMIT = 5\n"
    built = merge_git.build_commit(mirror, old, diff, "five\n", stamp)
    assert isinstance(built, str) and built == merge_git.build_commit(mirror, old, diff, "five\n", stamp)
    pushed = mr.human_push(human, "HUMAN.md", "hi\n")
    assert not merge_git.land(str(bare), mirror, "main", built, old)  # main moved: refused
    assert mr.git("rev-parse", "main", cwd=bare).strip() == pushed
    mr.git("fetch", "-q", str(bare), "main", cwd=mirror)
    again = merge_git.build_commit(mirror, pushed, diff, "five\n", stamp)
    assert isinstance(again, str) and merge_git.land(str(bare), mirror, "main", again, pushed)
    assert mr.git("rev-parse", "main", cwd=bare).strip() == again
    assert mr.git("for-each-ref", "refs/fleet", cwd=bare) == ""  # the landing ref is gone
    elsewhere = tmp_path / "elsewhere.git"  # another worker's mirror makes the same commit from the same inputs
    mr.git("clone", "-q", "--bare", str(bare), str(elsewhere), cwd=tmp_path)
    assert merge_git.build_commit(elsewhere, pushed, diff, "five\n", stamp) == again
    conflict = merge_git.build_commit(mirror, old, diff.replace("LIMIT = 1", "LIMIT = 9"), "x\n", stamp)
    assert isinstance(conflict, merge_git.Conflict) and conflict.files == ("shared.py",)


def test_a_push_the_target_refuses_is_not_taken_for_a_moved_target(tmp_path: Path) -> None:
    """A protected branch, a hook that declines or a token without write access failed the same way as a moved
    head: the queue re-read the same head and tried again, for ever, and said only that the target moved. A
    password in the remote's URL is never said."""
    bare, _ = mr.make_target(tmp_path)
    old = mr.git("rev-parse", "main", cwd=bare).strip()
    mirror = tmp_path / "mirror.git"
    mr.git("clone", "-q", "--bare", str(bare), str(mirror), cwd=tmp_path)
    diff = "--- a/shared.py\n+++ b/shared.py\n@@ -1 +1 @@\n-LIMIT = 1\n+LIMIT = 5\n"
    built = merge_git.build_commit(mirror, old, diff, "five\n", merge_git.Stamp(datetime(2026, 1, 1, tzinfo=UTC)))
    assert isinstance(built, str)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is a protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    for source in (f"file://{bare}", str(bare)):  # a push, or a folder's compare-and-swap
        with pytest.raises(TargetError, match="main is a protected branch"):
            merge_git.land(source, mirror, "main", built, old)
    secret = "http://ann:hunter2-s3cret@127.0.0.1:1/shop.git"  # a remote an older Fleet stored with its password
    for refusal in (
        lambda: merge_git.land(secret, mirror, "main", built, old),
        lambda: remote_head(secret, "main", bare),
    ):
        with pytest.raises(TargetError) as refused:
            refusal()
        assert "http://ann:***@127.0.0.1:1/shop.git" in str(refused.value) and "s3cret" not in str(refused.value)
    hook.unlink()
    assert not merge_git.land(f"file://{bare}", mirror, "main", built, "1" * 40)  # moved: False, tried again
    assert merge_git.land(f"file://{bare}", mirror, "main", built, old)
    assert mr.git("rev-parse", "main", cwd=bare).strip() == built


def _enqueued_behind_a_refusing_hook(fleet: Fleet) -> tuple[Path, int, Path]:
    """A verified ticket in the merge queue of a target whose pre-receive hook refuses every push: the target, the
    ticket and the hook."""
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp)
    register(fleet, bare, slots=1)
    ticket = submit(fleet, "Add mod1", mr.put(*mr.module("mod1", 1)))
    fleet.up(concurrency=1)
    fleet.run("merge", "enqueue", str(ticket))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is a protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    return bare, ticket, hook


def test_an_unreachable_target_is_logged_when_it_goes_not_at_every_pass(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """A remote that cannot be read was logged at every pass of a plain `fleet up`: now when it first cannot be,
    once when it is read again, and again when it next goes."""
    bare, _, _ = _enqueued_behind_a_refusing_hook(fleet)
    db = fleet.db()
    with db.session() as s:
        [repo_id] = [entry.repo_id for entry in s.query(MergeEntry).all()]
    settings = Settings(home=fleet.home, database_url=fleet.database_url)
    away = bare.with_name("moved-away.git")

    def said_of_passes(count: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="workers.merge_queue"):
            for _ in range(count):
                merge_queue.advance(db, settings, repo_id, len, len)
        return [r.getMessage() for r in caplog.records if "branch main:" in r.getMessage()]

    bare.rename(away)
    [gone] = said_of_passes(3)
    assert gone.startswith("merge queue of repo shop, branch main: ")
    away.rename(bare)
    assert said_of_passes(3) == ["merge queue of repo shop, branch main: read again"]
    bare.rename(away)
    assert said_of_passes(2) == [gone]


def test_up_until_idle_ends_when_the_target_refuses_the_push_and_says_why(fleet: Fleet) -> None:
    """The refused entry was retried every pass and counted as live work: `fleet up --until-idle` never ended. It
    ends now, naming the entry and the refusal; with the hook gone, the next run lands it."""
    bare, ticket, hook = _enqueued_behind_a_refusing_hook(fleet)
    with running(fleet.popen("up", "--until-idle", "--concurrency", "1")) as worker:
        try:
            out, _ = worker.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail("`fleet up --until-idle` waited for a push the target keeps refusing", pytrace=False)
    assert worker.returncode == 0, out
    [said] = [line for line in out.splitlines() if "waits in the merge queue" in line]
    assert said.startswith(f"ticket {ticket} waits in the merge queue of main: could not send the build to")
    assert "main is a protected branch" in said and f"`fleet merge eject {ticket}` takes it out" in said
    [entry] = entries(fleet)
    assert entry.status == "passed" and entry.refused_at is not None and "protected branch" in entry.reason
    hook.unlink()
    assert "waits in the merge queue" not in fleet.up(concurrency=1).stdout
    assert [e.status for e in entries(fleet)] == ["merged"]
    landed_once(bare, [ticket])


def test_a_refused_landing_is_logged_when_it_is_refused_not_at_every_pass(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain `fleet up` tries a refused entry's push again every pass, and logged the same warning every pass:
    now once when the target first refuses it, and again only when it says something else."""
    bare, ticket, hook = _enqueued_behind_a_refusing_hook(fleet)
    fleet.run("up", "--until-idle", "--concurrency", "1")  # built and verified; its landing refused
    db = fleet.db()
    with db.session() as s:
        [entry] = s.query(MergeEntry).all()
        entry.refused_at, entry.reason, repo_id = None, "", entry.repo_id
    settings = Settings(home=fleet.home, database_url=fleet.database_url)

    def warnings_of_passes(count: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="workers.merge_queue"):
            for _ in range(count):
                merge_queue.advance(db, settings, repo_id, len, len)
        return [r.getMessage() for r in caplog.records if r.name == "workers.merge_queue"]

    [first] = warnings_of_passes(3)
    assert first.startswith("merge queue of shop: ") and "main is a protected branch" in first
    hook.write_text("#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n")
    [changed] = warnings_of_passes(3)
    assert "main is frozen for the release" in changed
    [entry] = entries(fleet)
    assert entry.status == "passed" and entry.refused_at is not None and "frozen for the release" in entry.reason
