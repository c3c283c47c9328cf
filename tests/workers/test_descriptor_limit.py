"""A worker may hold many descriptors (several per running command); the commands it starts get the usual limit."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from system.sandbox import bwrap_missing

ROOT = Path(__file__).resolve().parents[2]
SHOW = """
import json, os, resource, sys
from pathlib import Path
from system.process import run_process
from system.rlimits import more_descriptors
from system.sandbox import View, confine
more_descriptors()
here = Path(sys.argv[1])
env = {"PATH": os.defpath}
plain = run_process(["sh", "-c", "ulimit -n"], cwd=here, env=env, timeout=30)
boxed = ""
if sys.argv[2] == "sandbox":
    boxed = run_process([*confine(View(workdir=here, writable=(here,))), "sh", "-c", "ulimit -n"], cwd=here,
                        env=env, timeout=30).output.strip()
print(json.dumps({"own": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "plain": plain.output.strip(),
                  "sandboxed": boxed}))
"""


def test_a_worker_raises_its_own_descriptor_limit_and_its_commands_start_under_the_old_one(tmp_path: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("util-linux's prlimit is not installed")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"this process may open {hard} descriptors: there is nothing to raise")
    where = "sandbox" if bwrap_missing() is None else "plain"
    done = subprocess.run(
        ["prlimit", "--nofile=1024:", "--", sys.executable, "-c", SHOW, str(tmp_path), where],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["own"] > 1024
    assert seen["plain"] == "1024"
    assert seen["sandboxed"] == ("1024" if where == "sandbox" else "")
