"""apply_patch: text diffs apply from stdin; empty, binary, compiled, special and escaping changes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_helpers import FIXED_CALC, Repo, sh_git

from verification.patch import PatchRefused, apply_patch

ESCAPE = """\
diff --git a/../outside.py b/../outside.py
new file mode 100644
--- /dev/null
+++ b/../outside.py
@@ -0,0 +1 @@
+print("escaped")
"""


def refused(repo: Repo, diff: str) -> str:
    with pytest.raises(PatchRefused) as info:
        apply_patch(repo.path, diff)
    return info.value.reason


def test_applies_a_text_diff_to_index_and_tree(repo: Repo) -> None:
    diff = repo.diff({"calc.py": FIXED_CALC, "notes/new.md": "hello\n"})
    assert apply_patch(repo.path, diff) == ["calc.py", "notes/new.md"]
    assert (repo.path / "calc.py").read_text() == FIXED_CALC
    assert "A  notes/new.md" in sh_git("status", "--short", cwd=repo.path)


def test_a_rename_names_both_paths(repo: Repo) -> None:
    diff = repo.diff({"calc.py": None, "calculator.py": (repo.path / "calc.py").read_text()})
    assert apply_patch(repo.path, diff) == ["calc.py", "calculator.py"]


def test_empty_diff(repo: Repo) -> None:
    assert refused(repo, "  \n") == "the agent changed nothing"


def test_binary_diff(repo: Repo) -> None:
    diff = repo.diff({"logo.png": bytes(range(256)) * 4})
    assert "GIT binary patch" in diff
    assert refused(repo, diff) == "binary changes are not accepted: logo.png"
    plain = (
        "diff --git a/x.bin b/x.bin\nnew file mode 100644\nindex 0000000..1111111\n"
        "Binary files /dev/null and b/x.bin differ\n"
    )
    assert refused(repo, plain) == "binary changes are not accepted: x.bin"


@pytest.mark.parametrize("name", ["calc.cpython-311.pyc", "__pycache__/calc.py", "evil.pth", "fast.so"])
def test_generated_files(repo: Repo, name: str) -> None:
    diff = repo.diff({name: "x = 1\n"})
    assert name in refused(repo, diff)


def test_symlink(repo: Repo) -> None:
    (repo.path / "link").symlink_to("/etc/passwd")
    diff = repo.diff({})
    assert refused(repo, diff) == "symbolic links and submodules are not accepted: link"


def test_path_escaping_the_checkout(repo: Repo, tmp_path: Path) -> None:
    assert "outside.py" in refused(repo, ESCAPE)
    assert not (tmp_path / "outside.py").exists()


def test_git_also_refuses_an_escape_it_sees(repo: Repo, tmp_path: Path) -> None:
    from system.git import GitError, git

    with pytest.raises(GitError):
        git("apply", "-", cwd=repo.path, input=ESCAPE)
    assert not (tmp_path / "outside.py").exists()


def test_a_diff_that_does_not_apply(repo: Repo) -> None:
    diff = repo.diff({"calc.py": FIXED_CALC}).replace("return a - b", "return a // b")
    assert refused(repo, diff).startswith("the diff does not apply at the base commit")


def test_a_file_name_is_never_an_option(repo: Repo) -> None:
    diff = repo.diff({"--exec=touch pwned": "x\n"})
    assert apply_patch(repo.path, diff) == ["--exec=touch pwned"]
    assert not (repo.path / "pwned").exists()
