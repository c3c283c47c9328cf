"""A spec's on_unconfined is told before any of its commands runs unsandboxed (the worker marks the attempt's folder,
which then serves no later attempt); a spec that requires a sandbox runs nothing without one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from system import seccomp
from system.sandbox import bwrap_missing
from verification.confined import prepare, run_confined
from verification.environment import SetupFailed
from verification.verify import VerifySpec


def _spec(ran: Path, told: list[bool], sandbox: bool | None, setup: bool = False) -> VerifySpec:
    command = f"touch {ran}"
    return VerifySpec(
        test_cmd="true" if setup else command,
        setup_cmd=command if setup else None,
        timeout=30,
        pin_pytest=False,
        sandbox=sandbox,
        on_unconfined=lambda: told.append(ran.exists()),
    )


@pytest.mark.parametrize("setup", [False, True], ids=["tests", "setup"])
def test_an_unsandboxed_command_is_told_before_it_runs(tmp_path: Path, setup: bool) -> None:
    """Where the worker decided once per verification, a probe that answered differently later let a command run
    unsandboxed in an attempt folder that was then kept for a later attempt."""
    ran, told = tmp_path / "ran", list[bool]()
    spec = _spec(ran, told, sandbox=False, setup=setup)
    checkout = _checkout(tmp_path / "checkout")
    if setup:
        prepare(checkout, spec, "the checkout", None, tmp_path / "reports")
    else:
        run_confined(checkout, spec, tmp_path / "reports", spec.test_cmd, None, None)
    assert ran.exists()
    assert told == [False]  # told once, before the command ran


@pytest.mark.parametrize("setup", [False, True], ids=["tests", "setup"])
def test_a_spec_that_requires_a_sandbox_runs_nothing_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: bool
) -> None:
    """The setup ran unsandboxed where the tests of the same spec were refused."""
    checkout = _checkout(tmp_path / "checkout")  # before PATH has no git
    monkeypatch.setenv("PATH", str(_programs_but_bwrap(tmp_path / "bin")))
    ran, told = tmp_path / "ran", list[bool]()
    spec = _spec(ran, told, sandbox=True, setup=setup)
    if setup:
        with pytest.raises(SetupFailed, match="a sandbox is required"):
            prepare(checkout, spec, "the checkout", None, tmp_path / "reports")
    else:
        run = run_confined(checkout, spec, tmp_path / "reports", spec.test_cmd, None, None)
        assert run.error is not None and "a sandbox is required" in run.error
    assert not ran.exists() and told == []


def _programs_but_bwrap(folder: Path) -> Path:
    """A PATH of what the commands need, without bubblewrap."""
    folder.mkdir()
    for name in ("sh", "touch", "true", "env"):
        (folder / name).symlink_to(shutil.which(name) or name)
    return folder


def _checkout(folder: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
def test_tests_sandboxed_without_the_seccomp_filter_carry_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only agents were told: without the filter a test run can make a fifo, which stalls the worker's git there."""
    monkeypatch.setattr(seccomp, "LIBRARY", "libseccomp-not-on-this-machine.so.0")
    seccomp._library.cache_clear()
    seccomp.filter_program.cache_clear()
    try:
        checkout = _checkout(tmp_path / "checkout")
        spec = VerifySpec(test_cmd="true", timeout=30, pin_pytest=False, sandbox=True)
        run = run_confined(checkout, spec, tmp_path / "reports", spec.test_cmd, None, None)
        assert run.exit_code == 0 and any("no seccomp filter" in warning for warning in run.warnings), run.warnings
    finally:
        monkeypatch.undo()
        seccomp._library.cache_clear()
        seccomp.filter_program.cache_clear()
