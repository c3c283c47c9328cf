"""Diffs that tried to make verify_diff record a pass for code whose tests fail, each beside its honest twin: real
git checkouts and real pytest runs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, TEST_CALC, Repo, make_repo

from db.lifecycle import Verdict
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

SPEC = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
REVERTED = "the diff changed protected test files or test settings, reverted: "
HELPER = "def check(got, want):\n    assert got == want\n"
CHECKED = TEST_CALC.replace("from calc import add, mul\n", "from calc import add, mul\nfrom helpers import check\n")
CHECKED = CHECKED.replace("assert add(2, 3) == 5", "check(add(2, 3), 5)").replace(
    "assert mul(2, 3) == 6", "check(mul(2, 3), 6)"
)
PATCHING_INIT = "import calc\n\ncalc.add = lambda a, b: a + b\n"
# The cases test_add is parametrized with are the code's own data: dropping the failing one drops its test.
CASES_CALC = "CASES = [(2, 3, 5), (0, 0, 0)]\n\n\n" + CALC
CASES_TEST = (
    "import pytest\n\nimport calc\n\n\n@pytest.mark.parametrize('a, b, want', calc.CASES)\n"
    "def test_add(a, b, want):\n    assert calc.add(a, b) == want\n\n\n"
    "def test_mul():\n    assert calc.mul(2, 3) == 6\n"
)
DOCTESTS = "[pytest]\naddopts = --doctest-modules\n"


def repo_with(tmp_path: Path, files: dict[str, str | None]) -> Repo:
    """The calc repository with files written (None: removed) in a second commit, its base."""
    repo = make_repo(tmp_path / "repo")
    repo.write(files)
    repo.commit("layout")
    return repo


def verify(tmp_path: Path, repo: Repo, files: dict[str, str | None], spec: VerifySpec = SPEC) -> VerificationResult:
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    checkout = repo.clone(tmp_path / "checkout")
    return verify_diff(checkout, repo.diff(files), spec, baseline, tmp_path / "reports")


def test_a_test_folders_init_that_patches_the_code_is_reverted_and_gamed(tmp_path: Path) -> None:
    """A `test/` folder (not `tests/`) holding test files: its `__init__.py` runs before them, under test only."""
    repo = repo_with(tmp_path, {"tests/test_calc.py": None, "test/test_calc.py": TEST_CALC})
    result = verify(tmp_path, repo, {"test/__init__.py": PATCHING_INIT})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith(REVERTED + "test/__init__.py")


def test_a_neutered_helper_beside_the_tests_is_reverted_and_gamed(tmp_path: Path) -> None:
    repo = repo_with(
        tmp_path, {"tests/test_calc.py": None, "testing/test_calc.py": CHECKED, "testing/helpers.py": HELPER}
    )
    result = verify(tmp_path, repo, {"testing/helpers.py": "def check(got, want):\n    pass\n"})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith(REVERTED + "testing/helpers.py")


def test_a_fixed_copy_of_the_code_in_the_test_folder_is_reverted_and_gamed(tmp_path: Path) -> None:
    """pytest puts a test file's folder first on sys.path: a `calc.py` there is what the tests import."""
    repo = repo_with(tmp_path, {"tests/test_calc.py": None, "test/test_calc.py": TEST_CALC})
    result = verify(tmp_path, repo, {"test/calc.py": FIXED_CALC})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith(REVERTED + "test/calc.py")


def test_the_fix_passes_beside_a_test_folder_and_its_helpers(tmp_path: Path) -> None:
    repo = repo_with(
        tmp_path, {"tests/test_calc.py": None, "testing/test_calc.py": CHECKED, "testing/helpers.py": HELPER}
    )
    result = verify(tmp_path, repo, {"calc.py": FIXED_CALC})
    assert result.verdict is Verdict.PASSED, result.reasons
    assert result.reverted == [] and result.fail_to_pass == ["testing/test_calc.py::test_add"]


def test_a_named_file_target_whose_failing_case_the_code_drops_is_failed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {"calc.py": CASES_CALC, "tests/test_calc.py": CASES_TEST})
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, targets=("tests/test_calc.py",))
    result = verify(tmp_path, repo, {"calc.py": CASES_CALC.replace("(2, 3, 5), ", "")}, spec)
    assert result.verdict is Verdict.FAILED
    assert result.reasons == ["tests/test_calc.py::test_add[2-3-5] was not found in the test results"]


def test_a_target_naming_a_parametrized_test_passes_when_every_case_does(tmp_path: Path) -> None:
    """`--target tests/test_calc.py::test_add` names both of its cases; it could never pass before."""
    repo = repo_with(tmp_path, {"calc.py": CASES_CALC, "tests/test_calc.py": CASES_TEST})
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, targets=("tests/test_calc.py::test_add",))
    result = verify(tmp_path, repo, {"calc.py": CASES_CALC.replace("a - b", "a + b")}, spec)
    assert result.verdict is Verdict.PASSED, result.reasons
    assert result.fail_to_pass == ["tests/test_calc.py::test_add"]


def test_a_doctest_that_rebinds_the_code_under_test_is_gamed(tmp_path: Path) -> None:
    """With --doctest-modules, calc.py's doctests run before tests/ and the change lasts into them."""
    repo = repo_with(tmp_path, {"pytest.ini": DOCTESTS})
    doctest = (
        '\n\ndef _examples():\n    """\n    >>> import test_calc\n    >>> test_calc.add = lambda a, b: a + b\n    """\n'
    )
    result = verify(tmp_path, repo, {"calc.py": CALC + doctest})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert "calc.py:10: runs a doctest that changes a module it imports (test_calc.add)" in result.reasons[0]


def test_a_doctest_that_sets_a_module_setting_passes_where_doctests_do_not_run(tmp_path: Path) -> None:
    """Without --doctest-modules no doctest runs, and an example that sets a module's setting is documentation."""
    examples = ">>> import calc\n    >>> calc.PRECISION = 2\n    >>> calc.add(2, 3)\n    5"
    doctest = f'\n\nPRECISION = 0\n\n\ndef _examples():\n    """\n    {examples}\n    """\n'
    result = verify(tmp_path, make_repo(tmp_path / "repo"), {"calc.py": FIXED_CALC + doctest})
    assert result.verdict is Verdict.PASSED, result.reasons


def test_a_doctest_that_calls_the_fixed_code_passes(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {"pytest.ini": DOCTESTS})
    examples = ">>> import calc\n    >>> total = calc.add(2, 3)\n    >>> total\n    5"
    doctest = f'\n\ndef _examples():\n    """\n    {examples}\n    """\n'
    result = verify(tmp_path, repo, {"calc.py": FIXED_CALC + doctest})
    assert result.verdict is Verdict.PASSED, result.reasons
    assert result.reverted == [] and result.flags == []


def test_a_regression_only_on_the_checkouts_first_run_is_not_flaky(tmp_path: Path) -> None:
    """mul breaks until a file the first run leaves in the checkout exists: its rerun there passed, and the
    regression was taken for a flaky test."""
    warm = "import pathlib\n\nFIRST = not pathlib.Path('.warm').exists()\npathlib.Path('.warm').touch()\n\n\n"
    first_only = warm + FIXED_CALC.replace("    return a * b", "    return a + b if FIRST else a * b")
    result = verify(tmp_path, make_repo(tmp_path / "repo"), {"calc.py": first_only})
    assert result.verdict is Verdict.FAILED and result.broken == ["tests/test_calc.py::test_mul"]
    assert result.flaky == [] and not any("flaky" in flag for flag in result.flags)


def test_a_test_file_the_command_names_is_protected_whatever_its_name(tmp_path: Path) -> None:
    """`pytest checks.py` collects checks.py though no python_files glob matches it."""
    repo = repo_with(tmp_path, {"tests/test_calc.py": None, "checks.py": TEST_CALC})
    spec = VerifySpec(test_cmd=f"{PYTEST} checks.py", timeout=60, env=FAST_ENV)
    result = verify(tmp_path, repo, {"checks.py": TEST_CALC.replace("assert add(2, 3) == 5", "pass")}, spec)
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith(REVERTED + "checks.py")
    honest = verify(tmp_path / "honest", repo, {"calc.py": FIXED_CALC}, spec)
    assert honest.verdict is Verdict.PASSED and honest.fail_to_pass == ["checks.py::test_add"]


# Written while the tests run, into a folder pytest collects later, encoded past every check of the diff.
LATER_FOLDER: dict[str, str | None] = {
    "tests/test_calc.py": None,
    "tests/test_a.py": "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
    "tests/unit/test_x.py": "import calc\n\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n",
}


def writing(name: str, text: str) -> str:
    blob = base64.b64encode(text.encode()).decode()
    return (
        f"\n\nimport base64 as _b64\nimport pathlib as _pl\n\n_unit = _pl.Path(__file__).parent / 'tests' / 'unit'\n"
        f"if _unit.is_dir():\n    (_unit / {name!r}).write_bytes(_b64.b64decode({blob!r}))\n"
    )


def test_a_test_module_the_code_writes_while_the_tests_run_is_gamed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, LATER_FOLDER)
    result = verify(tmp_path, repo, {"calc.py": CALC + writing("test_0.py", PATCHING_INIT)})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith("the test run collected tests/unit/test_0.py, which the code under test wrote")


def test_a_test_file_the_code_rewrites_before_pytest_reads_it_is_gamed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, LATER_FOLDER)
    result = verify(tmp_path, repo, {"calc.py": CALC + writing("test_x.py", "def test_add():\n    pass\n")})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith("the test run collected tests/unit/test_x.py, which the code under test")


def test_a_conftest_the_code_writes_while_the_tests_run_is_gamed(tmp_path: Path) -> None:
    """Its hooks apply to the folder's tests: this one passes the target's report whatever its test did."""
    hook = (
        "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    outcome = yield\n    if item.name == 'test_add':\n        outcome.get_result().outcome = 'passed'\n"
    )
    repo = repo_with(tmp_path, LATER_FOLDER)
    result = verify(tmp_path, repo, {"calc.py": CALC + writing("conftest.py", hook)})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith("the test run collected tests/unit/conftest.py, which the code under test")


def test_a_fix_whose_code_writes_a_data_file_while_the_tests_run_passes(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, LATER_FOLDER)
    result = verify(tmp_path, repo, {"calc.py": FIXED_CALC + writing("data.json", "{}")})
    assert result.verdict is Verdict.PASSED, result.reasons


# A suite whose own conftest writes a test module as each session starts (tests generated from data): the base's run
# writes it too, so it is the repository's doing, not the diff's.
GENERATING: dict[str, str | None] = {
    "tests/conftest.py": (
        "import pathlib\n\n\ndef pytest_sessionstart(session):\n"
        "    made = pathlib.Path(__file__).parent / 'generated'\n    made.mkdir(exist_ok=True)\n"
        "    (made / 'test_made.py').write_text('def test_made():\\n    assert True\\n')\n"
    ),
}


def test_a_fix_in_a_suite_that_generates_its_tests_as_it_runs_passes(tmp_path: Path) -> None:
    """The baseline read back as the worker stores it, in the database."""
    repo = repo_with(tmp_path, GENERATING)
    baseline = run_baseline(repo.clone(tmp_path / "base"), SPEC, tmp_path / "base-reports")
    stored = TestRun.from_json(json.loads(json.dumps(baseline.to_json())))
    checkout = repo.clone(tmp_path / "checkout")
    result = verify_diff(checkout, repo.diff({"calc.py": FIXED_CALC}), SPEC, stored, tmp_path / "reports")
    assert result.verdict is Verdict.PASSED, result.reasons


def test_a_test_module_the_code_writes_beside_generated_ones_is_gamed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, GENERATING | LATER_FOLDER)
    result = verify(tmp_path, repo, {"calc.py": CALC + writing("test_0.py", PATCHING_INIT)})
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0].startswith("the test run collected tests/unit/test_0.py, which the code under test wrote")
