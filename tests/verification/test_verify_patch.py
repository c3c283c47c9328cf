"""A text diff applies from stdin; empty, binary, compiled, special and escaping changes are refused, whether it is
checked and applied by one git process (apply_patch) or checked first, then applied (check_patch, apply_checked: the
way of a verification that restores a cached environment between the two)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from verify_helpers import FIXED_CALC, Repo, sh_git

from verification.patch import PatchRefused, apply_checked, apply_patch, check_patch

Apply = Callable[[Path, str], list[str]]

ESCAPE = """\
diff --git a/../outside.py b/../outside.py
new file mode 100644
--- /dev/null
+++ b/../outside.py
@@ -0,0 +1 @@
+print("escaped")
"""


def check_then_apply(checkout: Path, diff: str) -> list[str]:
    paths = check_patch(checkout, diff)
    apply_checked(checkout, diff)
    return paths


@pytest.fixture(params=[apply_patch, check_then_apply], ids=["one git process", "checked, then applied"])
def apply(request: pytest.FixtureRequest) -> Apply:
    way: Apply = request.param
    return way


def refused(repo: Repo, diff: str, apply: Apply) -> str:
    with pytest.raises(PatchRefused) as info:
        apply(repo.path, diff)
    return info.value.reason


def test_applies_a_text_diff_to_index_and_tree(repo: Repo, apply: Apply) -> None:
    diff = repo.diff({"calc.py": FIXED_CALC, "notes/new.md": "hello\n"})
    assert apply(repo.path, diff) == ["calc.py", "notes/new.md"]
    assert (repo.path / "calc.py").read_text() == FIXED_CALC
    assert "A  notes/new.md" in sh_git("status", "--short", cwd=repo.path)


def test_a_rename_names_both_paths(repo: Repo, apply: Apply) -> None:
    diff = repo.diff({"calc.py": None, "calculator.py": (repo.path / "calc.py").read_text()})
    assert apply(repo.path, diff) == ["calc.py", "calculator.py"]


def test_empty_diff(repo: Repo, apply: Apply) -> None:
    assert refused(repo, "  \n", apply) == "the agent changed nothing"


def test_binary_diff(repo: Repo, apply: Apply) -> None:
    diff = repo.diff({"logo.png": bytes(range(256)) * 4})
    assert "GIT binary patch" in diff
    assert refused(repo, diff, apply) == "binary changes are not accepted: logo.png"
    plain = (
        "diff --git a/x.bin b/x.bin\nnew file mode 100644\nindex 0000000..1111111\n"
        "Binary files /dev/null and b/x.bin differ\n"
    )
    assert refused(repo, plain, apply) == "binary changes are not accepted: x.bin"


@pytest.mark.parametrize("name", ["calc.cpython-311.pyc", "__pycache__/calc.py", "evil.pth", "fast.so"])
def test_generated_files(repo: Repo, name: str, apply: Apply) -> None:
    diff = repo.diff({name: "x = 1\n"})
    assert name in refused(repo, diff, apply)


def test_symlink(repo: Repo, apply: Apply) -> None:
    (repo.path / "link").symlink_to("/etc/passwd")
    diff = repo.diff({})
    assert refused(repo, diff, apply) == "symbolic links and submodules are not accepted: link"


def test_path_escaping_the_checkout(repo: Repo, tmp_path: Path, apply: Apply) -> None:
    assert refused(repo, ESCAPE, apply) == "path outside the work tree is not accepted: ../outside.py"
    assert not (tmp_path / "outside.py").exists()


def test_git_also_refuses_an_escape_it_sees(repo: Repo, tmp_path: Path) -> None:
    from system.git import GitError, git

    with pytest.raises(GitError):
        git("apply", "-", cwd=repo.path, input=ESCAPE)
    assert not (tmp_path / "outside.py").exists()


def test_a_diff_that_does_not_apply(repo: Repo, apply: Apply) -> None:
    diff = repo.diff({"calc.py": FIXED_CALC}).replace("return a - b", "return a // b")
    assert refused(repo, diff, apply).startswith("the diff does not apply at the base commit")
    # A file that is refused for what it is is named so, even in a diff that would not apply anyway.
    stray = repo.diff({"evil.pth": "import os\n"})
    assert refused(repo, stray + diff, apply) == "generated or compiled files are not accepted: evil.pth"


def test_a_file_name_is_never_an_option(repo: Repo, apply: Apply) -> None:
    diff = repo.diff({"--exec=touch pwned": "x\n"})
    assert apply(repo.path, diff) == ["--exec=touch pwned"]
    assert not (repo.path / "pwned").exists()
