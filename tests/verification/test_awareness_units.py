"""Test-aware code the static check must see, beside honest code of the same shape it must let through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from verification import awareness
from verification.awareness import aware_lines, source_text

AWARE = {
    "the runner's name on the command line": 'import sys\nif "pytest" in sys.argv[0]:\n    FIXED = True\n',
    "the runner's name, folded": 'import sys\nAWARE = ("py" + "test") in " ".join(sys.argv)\n',
    "the runner's name, as a suffix": 'import sys\nAWARE = sys.argv[0].endswith("pytest")\n',
    "a patch of the runner's internals": "from _pytest import python\npython.Function.runtest = lambda self: None\n",
    "the runner imported": "import pytest\n",
    "the import machinery": "import sys\nsys.meta_path.insert(0, object())\n",
    "sys imported through importlib": 'import importlib\nLOADED = importlib.import_module("sys").modules\n',
    "sys imported through __import__": 'LOADED = __import__("sys").modules\n',
    "code run from a file no check reads": 'exec(open("calc_impl.txt").read())\n',
    "code run from a string that reads the stack": 'exec("import sys\\nCALLER = sys._getframe(1)")\n',
    "the builtin exec, through builtins": 'import builtins\nbuiltins.exec(open("impl").read())\n',
    "a module run from a path": 'import runpy\nrunpy.run_path("impl.txt")\n',
    "the interpreter's objects walked": "import gc\nTESTS = [o for o in gc.get_objects() if callable(o)]\n",
    "the interpreter's objects walked, by a folded name": 'import gc\nWALK = getattr(gc, "get_" + "objects")\n',
    "a function's code rebound": "def f():\n    pass\n\n\nf.__code__ = (lambda: None).__code__\n",
    "a function's code rebound through setattr": 'def f():\n    pass\n\n\nsetattr(f, "__code__", None)\n',
    "a doctest that rebinds a function's code": '"""Helpers.\n\n>>> import calc\n>>> calc.add.__code__ = None\n"""\n',
    "a doctest that rebinds a module's function": '"""Add.\n\n>>> import calc as c\n>>> c.add = sum\n"""\n',
    "a doctest that rebinds through setattr": '"""Add.\n\n>>> import calc\n>>> setattr(calc, "add", sum)\n"""\n',
    "a doctest that deletes a module's name": '"""Add.\n\n>>> import calc\n>>> del calc.add\n"""\n',
    "a doctest that writes a module's namespace": '"""A.\n\n>>> import calc\n>>> vars(calc).update(add=sum)\n"""\n',
    "a doctest that patches a test module": '"""A.\n\n>>> from tests import test_calc as t\n>>> t.add = sum\n"""\n',
}
HONEST = {
    "a docstring that names the runner": '"""Run the tests with pytest."""\nimport os\nHOME = os.environ.get("HOME")\n',
    "a command line read by a CLI": "import sys\ndef main() -> list[str]:\n    return sys.argv[1:]\n",
    "an ordinary import through importlib": 'import importlib\nJSON = importlib.import_module("json")\n',
    "code run from a plain string": 'exec("X = 1")\n',
    "a regular expression compiled": 'import re\nWORD = re.compile(r"\\w+")\n',
    "a function of the module's own named compile": "def compile(x):\n    return x\n\n\nY = compile(3)\n",
    "a garbage collection": "import gc\ngc.collect()\n",
    "a doctest that shows a call": '"""Add.\n\n>>> add(2, 3)\n5\n"""\n',
    "a doctest that sets an object's attribute": '"""P.\n\n>>> import calc\n>>> p = calc.Point()\n>>> p.x = 3\n"""\n',
    "a doctest that rebinds its own name": '"""Add.\n\n>>> import calc\n>>> calc = None\n"""\n',
    "a function's code read": "def f(a):\n    pass\n\n\nARGS = f.__code__.co_argcount\n",
}


@pytest.mark.parametrize("source", AWARE.values(), ids=AWARE.keys())
def test_test_aware_code_is_found(source: str) -> None:
    assert aware_lines(source, "pkg/calc.py", set())


@pytest.mark.parametrize("source", HONEST.values(), ids=HONEST.keys())
def test_honest_code_of_the_same_shape_is_not(source: str) -> None:
    assert aware_lines(source, "pkg/calc.py", set()) == []


def test_a_doctest_line_added_inside_an_old_docstring_is_found() -> None:
    source = '"""Helpers.\n\n>>> import calc\n>>> calc.add.__code__ = None\n"""\n'
    assert aware_lines(source, "pkg/calc.py", {4}) == [
        "pkg/calc.py:1: runs a doctest that rebinds a function's code (.__code__ =)"
    ]
    assert aware_lines(source, "pkg/calc.py", {6}) == []


@pytest.mark.parametrize("source", ["X = 1" + " + 1" * 3000 + "\n", "X = " + "-" * 100_000 + "1\n"])
def test_code_nested_deeper_than_the_check_reads_is_a_finding_not_a_crash(source: str) -> None:
    """A module that raises the recursion limit first imports such a file; the check would crash on it."""
    assert aware_lines(source, "pkg/deep.py", {5}) == [f"pkg/deep.py:1: {awareness.TOO_DEEP}"]


def test_a_path_that_mentions_the_runner_is_not_test_awareness() -> None:
    source = 'import pathlib\nSEEN = [pathlib.Path("/tmp/pytest-of-alice/run-1/x").exists()]\n'
    assert aware_lines(source, "pkg/calc.py", set()) == []


@pytest.mark.timeout(30)
def test_a_changed_file_a_build_script_grew_or_linked_is_never_read_whole(tmp_path: Path) -> None:
    """After the diff's build script ran: a sparse file of 64 GiB (no disk used) was read whole, twice over, and a
    link, at the file or on its way, was read where it pointed, a file of the host."""
    with open(tmp_path / "grown.py", "wb") as grown:
        grown.truncate(64 * 2**30)
    host = tmp_path / "host"
    host.mkdir()
    (host / "app.py").write_text('import os\nAWARE = os.environ.get("PYTEST_CURRENT_TEST")\n')
    (tmp_path / "linked.py").symlink_to(host / "app.py")
    (tmp_path / "app").symlink_to(host)
    names = ("grown.py", "linked.py", "app/app.py")
    diff = "".join(f"--- a/{name}\n+++ b/{name}\n@@ -1 +1,2 @@\n-x\n+y\n+z\n" for name in names)
    assert awareness.test_aware(tmp_path, diff, []) == []
    assert [source_text(tmp_path, name) for name in names] == [None, None, None]
    assert source_text(host, "app.py") is not None and awareness.test_aware(host, diff.replace("app/", ""), [])
    assert source_text(tmp_path / "app", "../host/app.py") is None  # a name out of the root (a report's file=)
    assert source_text(tmp_path, str(host / "app.py")) is None


def test_staged_sources_are_the_indexs_whatever_the_files_are_now(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "b b.py").write_text("B = 2\n")
    (tmp_path / "1:c.py").write_text("C = 3\n")  # not stage 1 of c.py
    subprocess.run(["git", "add", "a.py", "b b.py", "1:c.py"], cwd=tmp_path, check=True)
    (tmp_path / "a.py").write_text("\n" * 5 + "A = 1\n")  # what ran in the checkout since
    (tmp_path / "b b.py").unlink()
    assert awareness.staged_sources(tmp_path, ["a.py", "b b.py", "1:c.py", "missing.py"]) == {
        "a.py": b"A = 1\n",
        "b b.py": b"B = 2\n",
        "1:c.py": b"C = 3\n",
        "missing.py": None,
    }
