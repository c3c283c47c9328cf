"""The tests of one diff and the setup before them, run confined (system/sandbox.py), the tests with pytest pinned to
the base's configuration; a command that runs unsandboxed tells its spec first (going_unconfined)."""

from __future__ import annotations

import os
import re
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from system.files import remove_tree
from system.sandbox import (
    bwrap_missing,
    confine,
    seccomp_warning,
    toolchain_roots,
    unsandboxed_tests_warning,
    verification_view,
)
from verification.channel import PLUGIN_DIR
from verification.environment import CacheUse, SetupFailed, SetupSandbox, copy_files, set_up_environment
from verification.judge import Judgement
from verification.runner import TestRun, run_tests, scrubbed_env

if TYPE_CHECKING:
    from verification.verify import VerifySpec

EMPTY_PYTEST_INI = PLUGIN_DIR / "fleet-pytest.ini"  # shown read-only to the sandbox with the plugin
SANDBOX_OFF = "tests ran without a sandbox (turned off in the repository settings)"
MAX_RERUN_IDS = 20
# Test ids can only be appended to a command that is a single pytest invocation (no ;, &&, pipes...).
PLAIN_PYTEST = re.compile(r"^[^;&|<>`$()\n]*\bpytest\b[^;&|<>`$()\n]*$")


def run_confined(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    command: str,
    cancelled: threading.Event | None,
    config: str | None,
    show_runner: bool = False,
) -> TestRun:
    wrapper = _wrapper(checkout, spec, report_dir)
    if wrapper is None and (refused := going_unconfined(spec)) is not None:
        return TestRun({}, None, False, "", 0.0, error=refused)
    run = run_tests(
        checkout,
        command,
        timeout=spec.timeout,
        report_dir=report_dir,
        env=spec.env,
        env_names=spec.env_names,
        granted_names=spec.granted_names,
        cancelled=cancelled,
        limit_bytes=spec.output_limit,
        pytest_args=pytest_pins(checkout, config) if spec.pin_pytest else (),
        wrapper=wrapper or (),
        show_runner=show_runner,
    )
    if wrapper is None:
        run.warnings.append(SANDBOX_OFF if spec.sandbox is False else unsandboxed_tests_warning())
    elif (unfiltered := seccomp_warning()) is not None:
        run.warnings.append(unfiltered)
    return run


def prepare(
    checkout: Path,
    spec: VerifySpec,
    where: str,
    cancelled: threading.Event | None,
    report_dir: Path,
    cached: bool = False,
) -> None:
    """Copy the repo's files in and set up its environment (from the cache when cached and allowed), in the
    sandbox when the tests have one: the setup may build a diff's code."""
    copy_files(spec.copy_files, checkout)
    if not spec.setup_cmd:
        return
    sandbox = None
    if sandboxed(spec):
        report_dir.mkdir(parents=True, exist_ok=True)
        scratch = fresh_folder(report_dir / "setup")  # inside the report folder an earlier test run could write
        sandbox = SetupSandbox(scratch, readable_roots(spec), spec.hidden, spec.setup_network, spec.setup_egress)
    elif (refused := going_unconfined(spec)) is not None:
        raise SetupFailed(refused)
    cache = None
    if cached and spec.env_cache is not None:
        copied = tuple(source for source, _ in spec.copy_files)
        cache = CacheUse(spec.env_cache, "verify", copied, spec.env_key_files)
    set_up_environment(
        checkout,
        spec.setup_cmd,
        where=where,
        timeout=spec.setup_timeout,
        env=scrubbed_env(spec.environment),
        cancelled=cancelled,
        cache=cache,
        sandbox=sandbox,
    )


def going_unconfined(spec: VerifySpec) -> str | None:
    """Before a command of spec runs without a sandbox: why it may not (the spec requires one), else None, once
    spec.on_unconfined was told (the worker marks the attempt's folder, which then serves no later attempt)."""
    if spec.sandbox:
        return f"a sandbox is required but {unsandboxed_tests_warning()}"
    if spec.on_unconfined is not None:
        spec.on_unconfined()
    return None


def _wrapper(checkout: Path, spec: VerifySpec, report_dir: Path) -> tuple[str, ...] | None:
    """The confinement of the code under test (system/sandbox.py), or None when it is off or cannot start."""
    if not sandboxed(spec):
        return None
    report_dir.mkdir(parents=True, exist_ok=True)
    return confine(verification_view(checkout, report_dir, spec.network, readable_roots(spec), spec.hidden))


def sandboxed(spec: VerifySpec) -> bool:
    return spec.sandbox is not False and bwrap_missing() is None


def readable_roots(spec: VerifySpec) -> tuple[Path, ...]:
    """The toolchains the test and setup commands need, and the declared paths, for the sandbox to show."""
    path_var = spec.environment.get("PATH", os.defpath)
    return toolchain_roots(path_var, (spec.test_cmd, spec.setup_cmd or ""), (*spec.readable, PLUGIN_DIR))


def pytest_pins(checkout: Path, config: str | None) -> list[str]:
    """pytest options that fix its configuration to config (the base's file, or none) and rootdir to the checkout."""
    if config is None:  # else pytest would look upward and may read a config outside the checkout
        return ["-c", str(EMPTY_PYTEST_INI), f"--rootdir={checkout}"]
    return ["-c", str(checkout / config), f"--rootdir={checkout}"]


def rerun_suspects(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None,
    run: TestRun,
    judgement: Judgement,
    config: str | None,
) -> TestRun | None:
    suspects = [t for t in judgement.broken + judgement.still_failing if t in run.results]
    if not (spec.rerun_failures and suspects and run.report_found and PLAIN_PYTEST.match(spec.test_cmd)):
        return None
    command = f"{spec.test_cmd} {shlex.join(suspects[:MAX_RERUN_IDS])}"
    return run_confined(checkout, spec, fresh_folder(report_dir / "rerun"), command, cancelled, config)


def visible_rerun(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None,
    judgement: Judgement,
    rerun: TestRun | None,
    config: str | None,
) -> TestRun | None:
    """The targets that failed twice with the runner's variables hidden, run once with them visible: code that
    passes only then behaves differently under test. Only on this failing path, so a pass costs nothing."""
    twice = [
        t for t in judgement.still_failing if rerun is not None and t in rerun.results and t not in judgement.flaky
    ]
    if not (twice and PLAIN_PYTEST.match(spec.test_cmd)):
        return None
    command = f"{spec.test_cmd} {shlex.join(twice[:MAX_RERUN_IDS])}"
    visible = fresh_folder(report_dir / "visible")
    return run_confined(checkout, spec, visible, command, cancelled, config, show_runner=True)


def fresh_folder(folder: Path) -> Path:
    """An empty folder of the worker's own at folder, inside a report folder the run before could write: whatever
    that run left there is removed, never followed. A link planted there would otherwise be bound writable into
    the next sandbox, and its target is any folder of the host."""
    remove_tree(folder)
    folder.mkdir()
    return folder
