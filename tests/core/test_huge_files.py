"""A sparse `.gitignore` of gigabytes left by a sandboxed agent, end to end: real bwrap, real git, through `fleet up`.

By default no agent, setup or test run can make a file over FLEET_MAX_FILE_MB; with that limit turned off, the
worker's git still reads the checkout within its own memory bound, and the attempt ends as an error that says why."""

from __future__ import annotations

import shlex
import time

import pytest

from system.sandbox import bwrap_missing
from tests.core.conftest import Fleet, scripted

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

ADD = "tests/test_calc.py::test_add"
GROW = "truncate -s {size} .gitignore; mkdir -p build && truncate -s {size} build/.gitignore"
HONEST_CACHE = "mkdir -p __pycache__ && head -c 50000000 /dev/zero > __pycache__/calc.cpython-311.pyc"


def _submit(fleet: Fleet, title: str, command: str) -> int:
    agent = f"sh -c {shlex.quote(command)}"
    [ticket] = fleet.submit("--repo", "calc", "--title", title, "--body", ADD, "--attempts", "1", "--agent-cmd", agent)
    return int(ticket["id"])


def test_a_sparse_gitignore_is_refused_and_an_honest_large_file_is_written(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    grow = "truncate -s 5G .gitignore"  # past the default limit, 4 GiB
    ticket = _submit(fleet, "grow", f"{grow}; {HONEST_CACHE} && {scripted('fix-add')}")
    fleet.up(concurrency=1)
    shown = fleet.json("show", str(ticket))
    assert shown["status"] == "needs_review", shown
    assert shown["runs"][0]["attempts"][0]["diff_stat"] == "1 file, +1 -1"


def test_a_huge_gitignore_ends_its_attempt_at_once_naming_it_and_the_slot_serves_the_next(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env.update(FLEET_MAX_FILE_MB="0", FLEET_WORKTREE_POOL_SIZE="1")  # no file size limit: git's own bound holds
    fleet.sample_repo()
    huge = _submit(fleet, "grow", f"{GROW.format(size='2G')} && {scripted('fix-add')}")
    honest = _submit(fleet, "honest", scripted("fix-add"))
    started = time.monotonic()
    fleet.up(concurrency=1)
    shown = fleet.json("show", str(huge))
    assert shown["status"] == "error", shown
    assert "more than the 1,024 MiB" in shown["reason"] and ".gitignore, is too large" in shown["reason"]
    assert fleet.json("show", str(honest))["status"] == "needs_review"
    assert time.monotonic() - started < 120


def test_the_file_size_limit_is_the_workers_setting(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env.update(FLEET_MAX_FILE_MB="20")
    fleet.sample_repo()
    ticket = _submit(fleet, "cache", f"{HONEST_CACHE}; stat -c 'written %s' __pycache__/*.pyc; {scripted('fix-add')}")
    fleet.up(concurrency=1)
    attempt = fleet.json("show", str(ticket))["runs"][0]["attempts"][0]
    assert f"written {20 * 2**20}\n" in fleet.run("logs", str(attempt["id"])).stdout
