"""A diff's own `.gitattributes` cannot make the files tested or landed other bytes than the diff shows: the agent's
diff is taken from a pooled worktree of the mirror, as the worker takes it, and verified in another."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from verify_helpers import FAST_ENV, FIXED_CALC, PYTEST, make_repo

from db.lifecycle import Verdict
from orchestrator.delivery import commit_diff
from system.git import git
from system.mirror import ensure_mirror
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff
from workers.worktree import WorktreePool

SPEC = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)

# Shown as a string of kanji; checked out as ISO-2022-JP, its bytes close the string and run code before a comment.
HIDDEN = b'"and[0][1:]else[a+b][0]#'
JIS_LINE = b'    return a + b if "\x1b$B' + HIDDEN + b'\x1b(B" else 0\n'
JIS_CALC = FIXED_CALC.encode().replace(b"    return a + b\n", JIS_LINE)
CRLF_CALC = FIXED_CALC.replace("\n", "\r\n").encode()


class Pools:
    """A repository's mirror with a pool for the agent and one for verification, and the baseline at its base."""

    def __init__(self, tmp_path: Path, files: Mapping[str, str | bytes] | None = None) -> None:
        repo = make_repo(tmp_path / "repo", files)  # type: ignore[arg-type]
        self.base = git("rev-parse", "HEAD", cwd=repo.path).strip()
        self.mirror = ensure_mirror(tmp_path / "mirrors", "r", str(repo.path), self.base)
        self.agent = WorktreePool(tmp_path / "agent", self.mirror, size=1)
        self.verify = WorktreePool(tmp_path / "verify", self.mirror, size=1)
        self.reports = tmp_path / "reports"
        with self.verify.lease(self.base) as checkout:
            self.baseline = TestRun.from_json(run_baseline(checkout.path, SPEC, self.reports / "base").to_json())

    def agent_diff(self, files: Mapping[str, str | bytes]) -> str:
        """The diff the worker takes of an agent that wrote files."""
        with self.agent.lease(self.base) as worktree:
            for name, content in files.items():
                path = worktree.path / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content.encode() if isinstance(content, str) else content)
            return worktree.diff()

    def verified(self, diff: str, checked: Callable[[Path], None] | None = None) -> VerificationResult:
        """The verdict on diff in a verification checkout; checked sees the checkout the tests ran in."""
        with self.verify.lease(self.base) as checkout:
            result = verify_diff(checkout.path, diff, SPEC, self.baseline, self.reports / "candidate")
            if checked is not None:
                checked(checkout.path)
        return result

    def landed(self, diff: str, path: str) -> bytes:
        """What a checkout of the commit delivery makes of diff holds at path."""
        commit = commit_diff(self.mirror, self.base, diff, "landed")
        with self.verify.lease(commit) as checkout:
            return (checkout.path / path).read_bytes()


@pytest.mark.parametrize(
    ("attributes", "calc"),
    [
        ({".gitattributes": "calc.py working-tree-encoding=ISO-2022-JP\n"}, JIS_CALC),
        ({".gitattributes": "*.py text eol=crlf\n"}, CRLF_CALC),
        ({".gitattributes": "calc.py ident\n"}, FIXED_CALC + "# $Id$\n"),
        ({".gitattributes": "*.py filter=lfs\n"}, FIXED_CALC),
        ({".gitattributes": "[attr]windows text eol=crlf\n*.py windows\n"}, CRLF_CALC),
        ({"tests/.gitattributes": "*.py   eol=crlf\n"}, FIXED_CALC),
        ({".gitattributes": "*.py -diff\reol=crlf\n"}, FIXED_CALC),  # git splits the line at the CR, not ends it
        ({".gitattributes": "*.py merge=union\n"}, FIXED_CALC),  # landed, later merges keep both sides of a conflict
        ({".gitattributes": "*.py -text text\n"}, FIXED_CALC),  # the last one on a line wins: set
        ({".gitattributes": "*.py binary text=auto\n"}, FIXED_CALC),
        ({".gitattributes": "*.py !text\n"}, FIXED_CALC),  # unspecified: a repository's eol=crlf would hold again
        ({".gitattributes": "*.py -merge eol=crlf\n"}, CRLF_CALC),
    ],
    ids=[
        "working-tree-encoding",
        "text eol",
        "ident",
        "filter",
        "a macro",
        "in a folder",
        "after a CR",
        "merge",
        "text after -text",
        "text=auto after binary",
        "!text",
        "eol after -merge",
    ],
)
def test_a_diff_changing_how_git_checks_out_or_merges_files_is_refused(
    tmp_path: Path, attributes: dict[str, str], calc: str | bytes
) -> None:
    pools = Pools(tmp_path)
    diff = pools.agent_diff({**attributes, "calc.py": calc})
    assert "\x1b" not in diff and "a + b\r" not in diff  # what the reviewer reads: the file as stored
    result = pools.verified(diff)
    assert result.verdict is Verdict.FAILED, result.reasons
    [name] = attributes
    assert result.reasons[0].startswith(f"the diff changes how git checks out or merges files ({name}: ")


def test_the_hidden_code_is_what_a_checkout_of_the_landed_commit_runs(tmp_path: Path) -> None:
    # Why it is refused: the reviewer reads a string of kanji, and the delivered branch checks out as code.
    pools = Pools(tmp_path)
    diff = pools.agent_diff({".gitattributes": "calc.py working-tree-encoding=ISO-2022-JP\n", "calc.py": JIS_CALC})
    assert 'return a + b if "≡鈔' in diff and HIDDEN.decode() not in diff
    assert HIDDEN in pools.landed(diff, "calc.py")


def test_reordering_converting_lines_is_a_change(tmp_path: Path) -> None:
    pools = Pools(tmp_path, {".gitattributes": "*.sh eol=crlf\n*.sh -text\n"})
    result = pools.verified(pools.agent_diff({".gitattributes": "*.sh -text\n*.sh eol=crlf\n", "calc.py": FIXED_CALC}))
    assert result.verdict is Verdict.FAILED and "'*.sh" in result.reasons[0]


def test_a_repositorys_own_end_of_line_attributes_still_hold(tmp_path: Path) -> None:
    pools = Pools(tmp_path, {".gitattributes": "*.bat eol=crlf\n", "run.bat": "echo 1\n"})
    diff = pools.agent_diff({"calc.py": FIXED_CALC, "run.bat": b"echo 1\r\necho 2\r\n"})
    assert "+echo 2\n" in diff
    tested: list[bytes] = []
    result = pools.verified(diff, lambda checkout: tested.append((checkout / "run.bat").read_bytes()))
    assert result.verdict is Verdict.PASSED, result.reasons
    assert tested == [b"echo 1\r\necho 2\r\n"] == [pools.landed(diff, "run.bat")]


def test_attributes_that_change_no_byte_of_a_checkout_may_be_added(tmp_path: Path) -> None:
    pools = Pools(tmp_path, {".gitattributes": "*.bat eol=crlf\n"})
    inert = "*.bat eol=crlf\n# generated\n*.png -diff\ndocs/** linguist-documentation\n*.lock export-ignore\n"
    result = pools.verified(pools.agent_diff({".gitattributes": inert, "calc.py": FIXED_CALC}))
    assert result.verdict is Verdict.PASSED, result.reasons


@pytest.mark.parametrize(
    "attributes",
    [
        {".gitattributes": "*.dat binary\n"},
        {".gitattributes": "*.dat -text\n"},
        {".gitattributes": "*.dat -merge\n"},
        {".gitattributes": "*.dat   -diff -merge -text linguist-generated\n"},
        {"data/.gitattributes": "* binary\n"},
    ],
    ids=["binary", "-text", "-merge", "each of them", "in a folder"],
)
def test_lines_that_only_unset_text_or_merge_may_be_added(tmp_path: Path, attributes: dict[str, str]) -> None:
    # A checkout holds the stored bytes wherever text is unset; unset merge only stops a later merge at a conflict.
    pools = Pools(tmp_path, {".gitattributes": "*.sh text eol=lf\n# ours\n", "run.sh": "echo 1\n"})
    [(name, added)] = attributes.items()
    written = b"1\r\n2\n"  # either end of line: nothing converts either
    files = {name: ("*.sh text eol=lf\n" + added if name == ".gitattributes" else added), "data/x.dat": written}
    diff = pools.agent_diff({**files, "calc.py": FIXED_CALC})
    tested: list[bytes] = []
    result = pools.verified(diff, lambda checkout: tested.append((checkout / "data/x.dat").read_bytes()))
    assert result.verdict is Verdict.PASSED, result.reasons
    assert tested == [written] == [pools.landed(diff, "data/x.dat")]


def test_a_macro_of_the_repositorys_own_is_compared_whatever_its_name(tmp_path: Path) -> None:
    # Set bare, a macro expands to what it defines: a name that reads as statistics' may convert.
    macros = "[attr]linguist-crlf text eol=crlf\n[attr]binary text eol=crlf\n"
    pools = Pools(tmp_path, {".gitattributes": macros})
    for added in ("*.py linguist-crlf\n", "*.py binary\n"):
        diff = pools.agent_diff({".gitattributes": macros + added, "calc.py": FIXED_CALC})
        assert pools.landed(diff, "calc.py") == CRLF_CALC
        result = pools.verified(diff)
        assert result.verdict is Verdict.FAILED and added.strip() in result.reasons[0], result.reasons


def test_removing_a_line_that_unsets_text_is_a_change(tmp_path: Path) -> None:
    pools = Pools(tmp_path, {".gitattributes": "*.py eol=crlf\n*.py -text\n"})
    diff = pools.agent_diff({".gitattributes": "*.py eol=crlf\n", "calc.py": FIXED_CALC})
    assert pools.landed(diff, "calc.py") == CRLF_CALC
    result = pools.verified(diff)
    assert result.verdict is Verdict.FAILED and "'*.py -text'" in result.reasons[0], result.reasons


def test_unsetting_text_over_the_repositorys_own_crlf_is_refused(tmp_path: Path) -> None:
    # git rewrites no file whose blob is the same: the checkout tested keeps run.bat's CRLF, a new one holds LF.
    pools = Pools(tmp_path, {"deep/.gitattributes": "*.bat eol=crlf\n", "deep/run.bat": "echo 1\n"})
    # Written out: the agent's checkout would diff run.bat too, as CRLF, whenever git looks at it again.
    added = "diff --git a/.gitattributes b/.gitattributes\nnew file mode 100644\n--- /dev/null\n+++ b/.gitattributes\n"
    diff = added + "@@ -0,0 +1 @@\n+*.bat binary\n" + pools.agent_diff({"calc.py": FIXED_CALC})
    tested: list[bytes] = []
    result = pools.verified(diff, lambda checkout: tested.append((checkout / "deep/run.bat").read_bytes()))
    assert result.verdict is Verdict.FAILED, result.reasons
    assert result.reasons[0].startswith("the diff unsets text where the repository's own attributes end lines with")
    fresh = tmp_path / "fresh"
    git(
        "worktree",
        "add",
        "--quiet",
        "--detach",
        str(fresh),
        commit_diff(pools.mirror, pools.base, diff, "l"),
        cwd=pools.mirror,
    )
    assert tested == [b"echo 1\r\n"] and (fresh / "deep/run.bat").read_bytes() == b"echo 1\n"
