"""The code under test runs beside the hidden tests and writes much that a verdict's reason may quote: pytest's summary
line, the report's file names and elements. A run that fails no visible test gets no second run, so none of it may
reach the agent's feedback."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hidden_split import SECRET_TEST, _hidden, _spec, _verify, needs_sandbox
from verify_helpers import FIXED_CALC, make_repo

from db.lifecycle import Verdict
from verification.clean_feedback import QUOTE_WITHHELD, speakable
from verification.judge import MORE_FAILING, verdict_only

SECRET_HEX = SECRET_TEST.encode().hex()
# Each reads the hidden tests at import and, once pytest is done, writes them as hex where a reason quotes it.
FIND = (
    "import atexit, glob, os\n"
    "found = [p for p in glob.glob('tests/*.py') if not p.endswith('test_calc.py')]\n"
    "DATA = ''.join(open(p).read() for p in found).encode().hex()\n"
)
SUMMARY = "atexit.register(lambda: os.write(1, ('\\n==== 1 skipped in 0.1s ' + DATA + ' ====\\n').encode()))\n"
REPORT = (
    "def _report():\n"
    "    with open(os.path.join(os.path.dirname(os.environ['HOME']), 'more.xml'), 'w') as out:\n"
    "        out.write('<x' + DATA + '/>')\n"
    "atexit.register(_report)\n"
)


@needs_sandbox
@pytest.mark.parametrize(
    "writes",
    [
        pytest.param(SUMMARY, id="a summary line of its own"),
        pytest.param(REPORT, id="a report whose root element is the test"),
    ],
)
def test_hidden_tests_written_where_a_reason_quotes_the_run_never_reach_the_feedback(
    tmp_path: Path, writes: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    result = _verify(tmp_path, repo, _spec(_hidden(tmp_path)), {"calc.py": FIND + writes + FIXED_CALC})
    assert result.verdict in (Verdict.GAMED, Verdict.ERROR, Verdict.FAILED)
    assert any(SECRET_HEX[:40] in reason for reason in result.reasons)  # the verdict's reasons, for people, keep it
    assert SECRET_HEX[:40] not in result.feedback
    assert QUOTE_WITHHELD in result.feedback


# Passes every test, then leaves with an exit code made of the hidden tests' first byte: eight bits an attempt.
EXIT_CODE = "atexit.register(lambda: os._exit(int(DATA[:2], 16) | 64))\n"


@needs_sandbox
def test_an_exit_code_the_code_under_test_chose_never_reaches_the_feedback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    result = _verify(tmp_path, repo, _spec(_hidden(tmp_path)), {"calc.py": FIND + EXIT_CODE + FIXED_CALC})
    code = int(SECRET_HEX[:2], 16) | 64
    assert any(f"exited {code}" in reason or f"exit code {code}" in reason for reason in result.reasons), result.reasons
    assert f"exited {code}" not in result.feedback and f"exit code {code}" not in result.feedback, result.feedback
    assert QUOTE_WITHHELD in result.feedback


# Fails as many made-up tests of the hidden file as the hidden tests have bytes: a number the agent reads back.
CASE = '<testcase classname="tests.test_secret_calc" name="t{}"><failure message="x">x</failure></testcase>'
MANY = (
    f"CASE = {CASE!r}\n"
    "def _report():\n"
    "    report = os.path.join(os.path.dirname(os.environ['HOME']), 'junit.xml')\n"
    "    text = open(report).read()\n"
    "    more = ''.join(CASE.format(i) for i in range(len(DATA) // 2))\n"
    "    open(report, 'w').write(text.replace('</testsuite>', more + '</testsuite>', 1))\n"
    "atexit.register(_report)\n"
)


@needs_sandbox
def test_the_count_of_hidden_tests_that_failed_counts_only_the_hidden_tests(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    result = _verify(tmp_path, repo, _spec(_hidden(tmp_path)), {"calc.py": FIND + MANY + FIXED_CALC})
    assert result.verdict is Verdict.FAILED and len(result.still_failing) > 100  # the verdict's evidence keeps them
    assert "hidden tests failed" not in result.feedback and MORE_FAILING not in result.feedback


def test_without_hidden_tests_every_reason_is_shown() -> None:
    judgement = verdict_only(Verdict.FAILED, "tests/test_a.py::test_x failed: boom", f"... and 5 {MORE_FAILING}")
    quoted = {"tests/test_a.py::test_x"}
    assert speakable(judgement, quoted, []).reasons == judgement.reasons
    assert speakable(judgement, quoted, ["tests/test_h.py"]).reasons == [QUOTE_WITHHELD]
