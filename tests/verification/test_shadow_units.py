"""The shadow check's own safety: it never runs what a diff's setup left in the checkout, a base file only
vouches for a module it defines, and hidden tests are never demoted to known failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from system.files import disk_usage
from system.git import git
from verification import shadow
from verification.awareness import added_lines
from verification.channel import _merge
from verification.report import Outcome, TestResult
from verification.runner import TestRun
from verification.shadow import environment_modules, module_names, shadowing
from verification.verify import VerifySpec, _targets

MARKER_CODE = "import pathlib; pathlib.Path({!r}).write_text('ran')\n"


def _site_with_traps(folder: Path, marker: Path) -> Path:
    site = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "evil.pth").write_text(MARKER_CODE.format(str(marker)))
    (site / "trap_module.py").write_text(MARKER_CODE.format(str(marker)))
    return site


def test_an_interpreter_inside_the_checkout_is_read_never_run(tmp_path: Path) -> None:
    checkout, marker = tmp_path / "checkout", tmp_path / "ran"
    venv = checkout / ".venv"
    _site_with_traps(venv, marker)
    python = venv / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\n{sys.executable} -c {MARKER_CODE.format(str(marker))!r}\n")
    python.chmod(0o755)
    names = environment_modules(str(python), checkout)
    assert not marker.exists()
    assert names["trap_module"] == "the environment" and names["json"] == "the standard library"


@pytest.mark.timeout(30)
def test_an_environment_inside_the_checkout_is_read_through_no_link_fifo_or_device(tmp_path: Path) -> None:
    """A diff's build script builds it: a .pth file linked to a fifo stopped the verification, holding the lock every
    verification of the process waits on; a METADATA linked to /dev/zero was read until memory ran out; a .pth
    naming a folder of the host, or a link to one, told the diff which module names that folder holds; a RECORD
    importlib.metadata cannot parse made the verification an error."""
    checkout, host = tmp_path / "checkout", tmp_path / "host"
    host.mkdir()
    (host / "host_module.py").write_text("")
    (host / "top_level.txt").write_text("host_top\n")
    os.mkfifo(host / "fifo")
    site = _site_with_traps(checkout / ".venv", tmp_path / "ran")
    (site / "host.pth").write_text(f"{host}\n")
    (site / "fifo.pth").symlink_to(host / "fifo")
    for name, metadata in {"zero": "/dev/zero", "linked": str(host / "top_level.txt")}.items():
        (site / f"{name}-1.0.dist-info").mkdir()
        (site / f"{name}-1.0.dist-info" / "METADATA").symlink_to(metadata)
        (site / f"{name}-1.0.dist-info" / "top_level.txt").symlink_to(host / "top_level.txt")
    (site / "honest-1.0.dist-info").mkdir()
    (site / "honest-1.0.dist-info" / "METADATA").write_text("Name: honest\nVersion: 1.0\n")
    (site / "honest-1.0.dist-info" / "top_level.txt").write_text("honest_top\n")
    (site / "linked-2.0.dist-info").symlink_to(host)
    (host / "host_package").mkdir()
    (host / "host_package" / "__init__.py").write_text("")
    (site / "host_package").symlink_to(host / "host_package")  # a folder of the host, asked whether it is a package
    (site / "broken-1.0.dist-info").mkdir()  # a RECORD importlib.metadata cannot parse: gamed became error
    (site / "broken-1.0.dist-info" / "METADATA").write_text("Name: broken\nVersion: 1.0\n")
    (site / "broken-1.0.dist-info" / "RECORD").write_text("broken.py,sha256=x,1,extra\n")
    (site / "own_package").mkdir()
    (site / "own_package" / "__init__.py").write_text("")
    names = environment_modules(str(checkout / ".venv" / "bin" / "python"), checkout)
    assert names["honest_top"] == "the installed package honest" and "trap_module" in names
    assert names["own_package"] == "the environment"
    assert not {"host_module", "host_top", "host_package"} & set(names)


def test_pth_files_are_read_as_paths_and_their_code_never_runs(tmp_path: Path) -> None:
    marker, extra = tmp_path / "ran", tmp_path / "extra"
    site = _site_with_traps(tmp_path / "env", marker)
    extra.mkdir()
    (extra / "added_by_pth.py").write_text("")
    (site / "paths.pth").write_text(f"# a comment\n{extra}\n")
    names = module_names([str(site)], tmp_path / "checkout")
    assert not marker.exists()
    assert "added_by_pth" in names and "trap_module" in names


def test_a_base_file_vouches_only_for_the_module_it_defines(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pytest.ini").write_text("[pytest]\n")
    (checkout / "test_x.py").write_text("def test_x():\n    assert True\n")
    git("init", "-q", cwd=checkout)
    git("add", "-A", cwd=checkout)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base", cwd=checkout)
    (checkout / "pytest.py").write_text("")
    reasons = shadowing(checkout, ["pytest.py"], "python -m pytest", dict(os.environ))
    assert reasons and "`pytest` module" in reasons[0]


def test_changed_files_that_define_no_module_never_read_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("state.txt", "README.md", "setup.cfg", "sitecustomize.py"):
        (checkout / name).write_text("changed\n")

    def read(python: str, checkout: Path) -> None:
        raise AssertionError(f"the environment of {python} was read")

    monkeypatch.setattr(shadow, "environment_modules", read)
    assert shadowing(checkout, ["state.txt", "README.md", "setup.cfg"], "python -m pytest", dict(os.environ)) == []
    with pytest.raises(AssertionError, match="was read"):
        shadowing(checkout, ["state.txt", "sitecustomize.py"], "python -m pytest", dict(os.environ))  # a module


def _failing(test_id: str) -> TestResult:
    return TestResult(test_id, Outcome.FAILED, "AssertionError: boom", "")


def test_a_hidden_test_failing_alike_at_the_parent_is_still_a_target() -> None:
    hidden_id, visible_id = "hidden/test_secret.py::test_fix", "tests/test_env.py::test_version"
    baseline = TestRun({t: _failing(t) for t in (hidden_id, visible_id)}, 1, True, "", 0.0)
    spec = VerifySpec(test_cmd="python -m pytest", timeout=60, known=(hidden_id, visible_id))
    assert _targets(spec, baseline, ["hidden/test_secret.py"]) == (hidden_id,)


def test_a_quoted_path_in_the_diff_is_still_checked() -> None:
    diff = (
        'diff --git "a/pkg/caf\\303\\251.py" "b/pkg/caf\\303\\251.py"\n--- /dev/null\n'
        '+++ "b/pkg/caf\\303\\251.py"\n@@ -0,0 +1,2 @@\n+import os\n+x = os.environ["PYTEST_CURRENT_TEST"]\n'
    )
    assert added_lines(diff) == {"pkg/café.py": {1, 2}}


def test_a_retried_attempt_is_not_a_failure_on_the_channel() -> None:
    outcomes: dict[str, str] = {}
    for outcome in ("rerun", "passed"):
        _merge(outcomes, "test_x.py::test_flaky", outcome)
    assert outcomes == {"test_x.py::test_flaky": "passed"}


def test_a_tree_nested_past_pythons_recursion_is_walked(tmp_path: Path) -> None:
    """os.walk recurses until Python 3.12: a diff's file 1,500 folders deep (or a build script's) raised RecursionError
    from the shadow check, making the verdict an error, and from the measure of an environment's size."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    handle = os.open(checkout, os.O_RDONLY)
    try:
        for _ in range(1500):
            os.mkdir("a", dir_fd=handle)
            inner = os.open("a", os.O_RDONLY, dir_fd=handle)
            os.close(handle)
            handle = inner
        with open(os.open("test_deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=handle), "w") as deep:
            deep.write("def test_deep(): pass\n")
        assert "" in shadow.import_roots(checkout) and disk_usage(checkout) > 0
    finally:
        os.close(handle)
        subprocess.run(["rm", "-rf", str(checkout)], check=False)  # pytest's own removal recurses too
