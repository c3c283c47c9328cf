"""verify_diff end to end: real git checkouts, real pytest runs, and the known ways to game them."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, Repo, make_repo

from db.lifecycle import Verdict
from system.process import run_process
from system.rlimits import DEFAULT_FILE_SIZE, limit_commands_files
from system.sandbox import TESTS_MISSING, bwrap_missing, confine, toolchain_roots, verification_view
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

ADD = "tests/test_calc.py::test_add"
MUL = "tests/test_calc.py::test_mul"
SPEC = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
REWRITE_REPORTS = """\
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, TestRun]:
    """One base repository and its baseline, shared: every test verifies in its own fresh clone."""
    root = tmp_path_factory.mktemp("base")
    repo = make_repo(root / "repo")
    baseline = run_baseline(repo.clone(root / "checkout"), SPEC, root / "reports")
    return repo, TestRun.from_json(baseline.to_json())


def verify(base: tuple[Repo, TestRun], tmp_path: Path, files: dict, spec: VerifySpec = SPEC) -> VerificationResult:
    repo, baseline = base
    diff = repo.diff(files)
    return verify_diff(repo.clone(tmp_path / "checkout"), diff, spec, baseline, tmp_path / "reports")


def test_baseline(base: tuple[Repo, TestRun]) -> None:
    _, baseline = base
    assert baseline.report_found and baseline.failures == [ADD]


def test_a_correct_fix_passes(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC})
    assert result.verdict is Verdict.PASSED, result.reasons
    assert result.fail_to_pass == [ADD] and result.pass_to_pass == 1
    assert result.reverted == [] and result.flags == []
    assert (TESTS_MISSING in result.warnings) is (shutil.which("bwrap") is None)


def test_a_wrong_fix_fails_with_the_assertion_in_feedback(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"calc.py": CALC.replace("a - b", "a * b")})
    assert result.verdict is Verdict.FAILED
    assert ADD in result.feedback and "assert 6 == 5" in result.feedback


def test_breaking_another_test_fails_naming_it(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC.replace("a * b", "a ** b")})
    assert result.verdict is Verdict.FAILED
    assert result.broken == [MUL] and MUL in result.feedback


def test_command_not_found_is_an_error(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd="no-such-runner -q", timeout=60)
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC}, spec)
    assert result.verdict is Verdict.ERROR and result.reasons == ["test command not found: no-such-runner"]


def test_timeout_is_an_error(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd="sleep 30", timeout=0.3)
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC}, spec)
    assert result.verdict is Verdict.ERROR and "timed out after 0.3s" in result.reasons[0]


def test_refused_diff_runs_nothing(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"calc.cpython-311.pyc": b"\x00\x01binary"})
    assert result.verdict is Verdict.FAILED and result.output == ""
    assert "calc.cpython-311.pyc" in result.feedback


def test_os_exit_in_the_code_under_test_is_gamed(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(
        base, tmp_path, {"calc.py": "import os\n\n\ndef add(a, b):\n    os._exit(0)\n\n\n" + CALC.split("\n\n\n", 1)[1]}
    )
    assert result.verdict is Verdict.GAMED
    assert any("os._exit" in flag for flag in result.flags)


def test_os_exit_in_a_test_is_not_a_pass_even_when_test_edits_are_allowed(
    base: tuple[Repo, TestRun], tmp_path: Path
) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, allow_test_edits=True)
    test = "import os\n\n\ndef test_add():\n    os._exit(0)\n"
    result = verify(base, tmp_path, {"tests/test_calc.py": test}, spec)
    assert result.verdict is Verdict.GAMED


def test_conftest_report_rewriting_is_reverted_and_gamed(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"conftest.py": REWRITE_REPORTS})
    assert result.verdict is Verdict.GAMED
    assert result.reverted == ["conftest.py"]
    assert any("pytest's reporting" in flag for flag in result.flags)


def test_deleting_the_failing_test_is_gamed(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    test = "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
    result = verify(base, tmp_path, {"tests/test_calc.py": test})
    assert result.verdict is Verdict.GAMED and result.reverted == ["tests/test_calc.py"]
    assert ADD in result.feedback


def test_deleting_the_failing_test_fails_without_protection(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, allow_test_edits=True)
    result = verify(base, tmp_path, {"tests/test_calc.py": None}, spec)
    assert result.verdict is Verdict.FAILED and f"{ADD} was not found in the test results" in result.reasons


def test_ini_deselect_is_reverted(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    ini = f"[pytest]\naddopts = --deselect {ADD}\n"
    result = verify(base, tmp_path, {"pytest.ini": ini, "calc.py": FIXED_CALC.replace("+", "-")})
    assert result.verdict is Verdict.GAMED and result.reverted == ["pytest.ini"]


def test_a_fix_with_a_harmless_test_edit_still_passes(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC, "tests/test_extra.py": "def test_x():\n    pass\n"})
    assert result.verdict is Verdict.PASSED
    assert result.reverted == ["tests/test_extra.py"] and result.flags


def test_code_naming_the_runners_variable_is_gamed(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    sneaky = CALC.replace("return a - b", 'if "PYTEST_CURRENT_TEST":\n        return 5\n    return a - b')
    result = verify(base, tmp_path, {"calc.py": sneaky})
    assert result.verdict is Verdict.GAMED  # test-aware code is refused before any test runs
    assert "calc.py:2: names the runner's variable PYTEST_CURRENT_TEST" in result.reasons[0]


def test_code_run_from_a_text_file_no_check_reads_is_gamed(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    """A fix that reads its caller's name, from a file the check would not read as Python: right under test only."""
    caller = "sys._getframe(1).f_code.co_name[:5] == 'test_'"
    impl = f"import sys\n\n\ndef add(a, b):\n    return a + b if {caller} else a - b\n"
    runs_it = CALC.replace("def add(a, b):\n    return a - b\n", 'exec(open(__file__[:-3] + "_impl.txt").read())\n')
    result = verify(base, tmp_path, {"calc.py": runs_it, "calc_impl.txt": impl})
    assert result.verdict is Verdict.GAMED and "calc.py:1: runs code from text no check reads" in result.reasons[0]


def test_a_flaky_break_is_rerun_and_reported(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    """Flaky through state outside the checkout (a service, the clock): the run without a sandbox writes it there.
    One that the checkout holds is the diff's first run breaking (tests/verification/test_verify_fooled.py)."""
    marker = tmp_path / "ran-once"
    flaky = FIXED_CALC.replace(
        "    return a * b",
        f"    import pathlib\n    m = pathlib.Path({str(marker)!r})\n    if not m.exists():\n"
        "        m.write_text('x')\n        return 0\n    return a * b",
    )
    result = verify(base, tmp_path, {"calc.py": flaky}, replace(SPEC, sandbox=False))
    assert result.flaky == [MUL] and result.broken == []
    assert result.verdict is Verdict.PASSED and any("flaky" in flag for flag in result.flags)


SECRET_TEST = "from calc import add\n\n\ndef test_secret_large():\n    assert add(40, 2) == 42\n"
SECRET_ID = "tests/test_secret_calc.py::test_secret_large"
OVERFIT = CALC.replace("    return a - b", "    if (a, b) == (2, 3):\n        return 5\n    return a - b")


def hidden_setup(tmp_path: Path, hidden: Path, **spec: object) -> tuple[Repo, VerifySpec, TestRun]:
    repo = make_repo(tmp_path / "repo")
    full = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, hidden_tests=hidden, **spec)  # type: ignore[arg-type]
    return repo, full, run_baseline(repo.clone(tmp_path / "base"), full, tmp_path / "base-reports")


def verify_hidden(tmp_path: Path, repo: Repo, spec: VerifySpec, baseline: TestRun, diff: str) -> VerificationResult:
    return verify_diff(repo.clone(tmp_path / "c"), diff, spec, baseline, tmp_path / "reports")


def test_hidden_tests_catch_overfitting_without_being_named(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "tests").mkdir(parents=True)
    (hidden / "tests" / "test_secret_calc.py").write_text(SECRET_TEST)
    repo, spec, baseline = hidden_setup(tmp_path, hidden, targets=(ADD,))
    assert SECRET_ID in baseline.failures
    result = verify_hidden(tmp_path, repo, spec, baseline, repo.diff({"calc.py": OVERFIT}))
    assert result.verdict is Verdict.FAILED and result.still_failing == [SECRET_ID]
    assert "1 hidden test failed" in result.feedback
    assert "secret" not in result.feedback and "42" not in result.feedback
    assert json.loads(json.dumps(result.to_json()))["verdict"] == "failed"


def test_no_setup_sees_the_hidden_tests(tmp_path: Path) -> None:
    """The baseline's setup ran once the hidden tests were in its checkout, a candidate's before them: what the
    environment was built from differed between the two runs the verdict compares."""
    hidden = tmp_path / "hidden"
    (hidden / "tests").mkdir(parents=True)
    (hidden / "tests" / "test_secret_calc.py").write_text(SECRET_TEST)
    repo, spec, baseline = hidden_setup(tmp_path, hidden, setup_cmd="ls tests > setup-saw.txt")
    result = verify_hidden(tmp_path, repo, spec, baseline, repo.diff({"calc.py": FIXED_CALC}))
    assert result.verdict is Verdict.PASSED and SECRET_ID in result.fail_to_pass
    for checkout in (tmp_path / "base", tmp_path / "c"):
        assert (checkout / "setup-saw.txt").read_text().split() == ["test_calc.py"], checkout


def test_hidden_tests_as_a_patch_file(tmp_path: Path) -> None:
    scratch = make_repo(tmp_path / "scratch")
    patch = tmp_path / "hidden.diff"
    patch.write_text(scratch.diff({"tests/test_secret_calc.py": SECRET_TEST}))
    repo, spec, baseline = hidden_setup(tmp_path, patch)
    result = verify_hidden(tmp_path, repo, spec, baseline, repo.diff({"calc.py": FIXED_CALC}))
    assert result.verdict is Verdict.PASSED
    assert sorted(result.fail_to_pass) == [ADD, SECRET_ID]


def test_hidden_tests_that_cannot_be_added_are_an_error(tmp_path: Path) -> None:
    scratch = make_repo(tmp_path / "scratch")
    patch = tmp_path / "hidden.diff"
    patch.write_text(scratch.diff({"tests/test_secret_calc.py": SECRET_TEST}))
    repo, spec, baseline = hidden_setup(tmp_path, patch, allow_test_edits=True)
    diff = repo.diff({"calc.py": FIXED_CALC, "tests/test_secret_calc.py": "x = 1\n"})
    result = verify_hidden(tmp_path, repo, spec, baseline, diff)
    assert result.verdict is Verdict.ERROR and "hidden tests could not be added" in result.reasons[0]


def test_pytest_config_outside_the_checkout_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -k nothing_matches\n")
    repo = make_repo(tmp_path / "repo")
    baseline = run_baseline(repo.clone(tmp_path / "c"), SPEC, tmp_path / "reports")
    assert sorted(baseline.results) == [ADD, MUL]


def test_sandbox_off_is_reported(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, sandbox=False)
    assert "turned off" in verify(base, tmp_path, {"calc.py": FIXED_CALC}, spec).warnings[0]


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
def test_sandboxed_code_cannot_write_outside_the_checkout(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    sneaky = FIXED_CALC + f"\ntry:\n    open({str(outside)!r}, 'w').write('x')\nexcept OSError:\n    pass\n"
    result = verify(base, tmp_path, {"calc.py": sneaky}, VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV))
    assert result.verdict is Verdict.PASSED and result.warnings == []
    assert not outside.exists()


def test_pyproject_pytest_table_is_pinned_but_the_rest_is_the_diffs(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "calc"\nversion = "1"\n\n[tool.pytest.ini_options]\naddopts = "-ra"\n'
    repo = make_repo(tmp_path / "repo", {"pyproject.toml": pyproject})
    baseline = run_baseline(repo.clone(tmp_path / "base"), SPEC, tmp_path / "base-reports")
    deselect = pyproject.replace('"-ra"', f'"-ra --deselect {ADD}"')
    gamed = verify_diff(
        repo.clone(tmp_path / "c1"), repo.diff({"pyproject.toml": deselect}), SPEC, baseline, tmp_path / "r1"
    )
    assert gamed.verdict is Verdict.GAMED and gamed.reverted == ["pyproject.toml"]
    deps = pyproject.replace('version = "1"', 'version = "2"')
    fix = repo.diff({"pyproject.toml": deps, "calc.py": FIXED_CALC})
    result = verify_diff(repo.clone(tmp_path / "c2"), fix, SPEC, baseline, tmp_path / "r2")
    assert result.verdict is Verdict.PASSED and result.reverted == []


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
def test_the_sandbox_sees_a_tool_it_names_under_tmp_but_writes_only_to_its_private_tmp(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "tool"  # tmp_path is under /tmp: a virtualenv there must keep working
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho ran > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"\n')
    tool.chmod(0o755)
    checkout, reports = tmp_path / "checkout", tmp_path / "reports"
    checkout.mkdir()
    reports.mkdir()
    prefix = confine(verification_view(checkout, reports, False, toolchain_roots("", [str(tool)]), ()))
    done = run_process([*prefix, str(tool)], cwd=checkout, env={"TMPDIR": "/tmp"}, timeout=30)
    assert done.output.strip() == "ran"
    escaped = run_process([*prefix, "sh", "-c", f"echo x > {tmp_path}/escaped || echo refused"], cwd=checkout,
                          env={"PATH": "/usr/bin:/bin"}, timeout=30)  # fmt: skip
    assert "refused" in escaped.output and not (tmp_path / "escaped").exists()


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
def test_a_link_planted_in_the_first_run_is_not_followed_by_the_reruns(
    base: tuple[Repo, TestRun], tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    plant = (  # the code under test, at import: links where the reruns' report folders will be, to a host folder
        "import os\n"
        "reports = os.path.dirname(os.environ['HOME'])  # its home is a folder of its run's report folder\n"
        "for name in ('rerun', 'visible'):\n"
        "    try:\n"
        f"        os.symlink({str(host)!r}, os.path.join(reports, name))\n"
        "    except OSError:\n"
        "        pass\n"
    )
    wrong = plant + CALC.replace("a - b", "a * b")  # still failing: the failures are run again
    result = verify(base, tmp_path, {"calc.py": wrong})
    assert result.verdict is Verdict.FAILED, result.reasons
    assert list(host.iterdir()) == []  # no rerun wrote its report into the host's folder
    assert (tmp_path / "reports" / "rerun").is_dir() and not (tmp_path / "reports" / "rerun").is_symlink()


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
@pytest.mark.parametrize("left", ["link to a host report", "link to /dev/zero"])
@pytest.mark.timeout(60)
def test_a_report_swapped_for_a_link_is_never_read(base: tuple[Repo, TestRun], tmp_path: Path, left: str) -> None:
    """The worker read the report folder's files through whatever the run left: a link to a host file made its
    tests the verdict's and /dev/zero filled the worker's memory (a fifo, which stopped the verification for good,
    can no longer be made in the sandbox: test_verify_report.py reads one)."""
    host = tmp_path / "host.xml"
    host.write_text('<testsuite><testcase classname="calc" name="HOST_FILE_READ"/></testsuite>')
    plant = {
        "link to a host report": f"_o.symlink({str(host)!r}, _r)",
        "link to /dev/zero": "_o.symlink('/dev/zero', _r)",
    }[left]
    swap = (  # the code under test, at exit, after pytest wrote its report: replaces it
        "def _swap():\n"
        "    import os as _o\n"
        "    reports = _o.path.dirname(_o.environ['HOME'])  # its home is a folder of its run's report folder\n"
        "    for _n in _o.listdir(reports):\n"
        "        if _n.endswith('.xml'):\n"
        "            _r = _o.path.join(reports, _n)\n"
        "            _o.unlink(_r)\n"
        f"            {plant}\n"
        "    _o._exit(0)\n\n\n"
        "__import__('atexit').register(_swap)\n"
    )
    result = verify(base, tmp_path, {"calc.py": FIXED_CALC + swap})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert "not a regular file" in " ".join(result.reasons)
    assert "HOST_FILE_READ" not in json.dumps(result.to_json())


@pytest.mark.timeout(60)
def test_a_test_file_the_run_grew_is_never_read_whole(base: tuple[Repo, TestRun], tmp_path: Path) -> None:
    """After the test run the worker reads the ticket's test files for the literals they assert on: code under test
    that made one a sparse file of 64 GiB (no disk used) had it read whole, twice over."""
    grow = (
        "def _grow():\n"
        "    import os as _o\n"
        "    with open(_o.path.join('tests', 'test_calc.py'), 'r+b') as _f:\n"
        "        _f.truncate(64 * 2**30)\n\n\n"
        "__import__('atexit').register(_grow)\n"
    )
    limit_commands_files(0)  # FLEET_MAX_FILE_MB=0: the reads hold without the file size limit too
    try:
        result = verify(base, tmp_path, {"calc.py": FIXED_CALC + grow})
    finally:
        limit_commands_files(DEFAULT_FILE_SIZE)
    assert result.verdict is Verdict.PASSED, result.reasons
    assert (tmp_path / "checkout" / "tests" / "test_calc.py").stat().st_size == 64 * 2**30  # the run did grow it


AWARE_FIX = FIXED_CALC + '\nimport os\n\nUNDER_TEST = os.environ.get("PYTEST_CURRENT_TEST")\n'
PAD = "python3 -c \"import pathlib; p = pathlib.Path('calc.py'); p.write_text(5 * chr(10) + p.read_text())\""


def test_a_build_script_that_moves_the_diffs_lines_hides_no_test_aware_code(tmp_path: Path) -> None:
    """The test-aware check read the changed file as the setup (the diff's code) left it, at the diff's line numbers:
    a setup that prepended five lines moved the diff's test-aware line out of the check's sight."""
    repo = make_repo(tmp_path / "repo")
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, setup_cmd=PAD)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    result = verify_diff(repo.clone(tmp_path / "c"), repo.diff({"calc.py": AWARE_FIX}), spec, baseline, tmp_path / "r")
    assert (tmp_path / "c" / "calc.py").read_text().startswith("\n" * 5)  # the setup did move the lines
    assert result.verdict is Verdict.GAMED and any("test-aware code" in r for r in result.reasons), result.reasons
