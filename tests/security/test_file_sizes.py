"""The largest file an agent, a setup or a test run may write (FLEET_MAX_FILE_MB, RLIMIT_FSIZE soft and hard), in
each of the three sandboxes, as root and as an unprivileged worker: a sparse `.gitignore` of gigabytes for the
worker's git to read whole cannot be made, and an honest command's large file is written as ever. Real bubblewrap."""

from __future__ import annotations

import os

import pytest

from system.rlimits import DEFAULT_FILE_SIZE
from system.sandbox import bwrap_missing
from tests.security.conftest import Sandbox

IN_CI = os.environ.get("CI", "").lower() == "true"

if bwrap_missing() is not None and IN_CI:
    raise RuntimeError(f"the file size tests need bubblewrap under CI: {bwrap_missing()}")
pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

PAST_THE_LIMIT = DEFAULT_FILE_SIZE + 2**30


def test_a_sparse_file_past_the_limit_cannot_be_made(sandbox: Sandbox) -> None:
    gitignore = sandbox.workdir / "build" / ".gitignore"
    done = sandbox.run(f"mkdir -p build && truncate -s {PAST_THE_LIMIT} build/.gitignore; ls -l build/.gitignore")
    assert done.returncode == 0, done.stdout
    assert gitignore.stat().st_size == 0  # truncate made it, and was stopped growing it
    python = f"import os; os.truncate({str(gitignore)!r}, {PAST_THE_LIMIT})"
    assert "File too large" in sandbox.run(f"python3 -c {python!r} 2>&1").stdout
    assert gitignore.stat().st_size == 0


def test_the_file_size_limit_cannot_be_raised_from_inside(sandbox: Sandbox) -> None:
    done = sandbox.run(f"ulimit -f unlimited; truncate -s {PAST_THE_LIMIT} big; stat -c %s big")
    assert done.stdout.split()[-1] == "0", done.stdout


def test_an_honest_large_file_is_written(sandbox: Sandbox) -> None:
    done = sandbox.run("head -c 50000000 /dev/zero > dist.whl && stat -c %s dist.whl")
    assert done.returncode == 0 and done.stdout.split()[-1] == "50000000", done.stdout
