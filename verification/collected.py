"""The files pytest collects tests from, as the base's configuration and the test command tell it.

pytest collects its `python_files` (default `test_*.py`, `*_test.py`), any Python file its command line names, and,
as doctests, the files its `--doctest-glob` options name (default `test*.txt`). A file a diff adds or changes that
pytest would collect is a test file whatever the protect patterns say: a `test.txt` doctest at the root runs in the
test session before the tests and can rebind the code under test (`calc.add.__code__ = ...`) so the target passes
while the code stays wrong.
"""

from __future__ import annotations

import configparser
import fnmatch
import shlex
import tomllib
from collections.abc import Sequence

PYTHON_FILES = ("test_*.py", "*_test.py")  # pytest's python_files when the configuration sets none
DOCTEST_FILES = ("test*.txt",)  # pytest's --doctest-glob when no option names one
# A python_files glob that matches any module's name (`*.py`: every module is a test module, as testpaths narrow it)
# names no test file: protecting it would revert every fix.
ANY_MODULE = "module.py"
INI_SECTIONS = {"pytest.ini": "pytest", ".pytest.ini": "pytest", "tox.ini": "pytest", "setup.cfg": "tool:pytest"}
DOCTEST_OPTION = "--doctest-glob"
DOCTEST_MODULES = "--doctest-modules"


def configured(name: str | None, text: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(python_files, arguments) of a pytest configuration file's text (empty when it sets them not): the arguments
    are the words of its addopts, then of its testpaths, which pytest reads as its command line's."""
    options = _options(name, text)
    arguments = (*_words(options.get("addopts")), *_words(options.get("testpaths")))
    return _words(options.get("python_files")), arguments


def collected_globs(python_files: Sequence[str], arguments: Sequence[str], command: str) -> tuple[str, ...]:
    """The globs of the files pytest collects tests from: python_files (but one that matches any module), and the
    doctest globs the configuration's arguments and the command name (pytest's defaults for either when none is
    given), and the Python files they name."""
    words = [*arguments, *_split(command)]
    modules = [glob for glob in python_files or PYTHON_FILES if not fnmatch.fnmatchcase(ANY_MODULE, glob)]
    return (*modules, *(_doctest_globs(words) or DOCTEST_FILES), *named_modules(words))


def runs_doctest_modules(arguments: Sequence[str], command: str) -> bool:
    """True when the configuration's arguments or the command run modules' doctests (`--doctest-modules`)."""
    return DOCTEST_MODULES in [*arguments, *_split(command)]


def named_modules(words: Sequence[str]) -> list[str]:
    """The Python files the command line names (`pytest checks.py`, `checks.py::test_add`): pytest collects tests
    from a file named so whatever its python_files say. None under --doctest-modules, where a named module is the
    code whose doctests run."""
    if DOCTEST_MODULES in words:
        return []
    paths = [word.split("::", 1)[0].removeprefix("./") for word in words if not word.startswith("-")]
    return sorted({path for path in paths if path.endswith(".py") and not path.startswith("/")})


def _options(name: str | None, text: str | None) -> dict[str, object]:
    if name is None or text is None:
        return {}
    if name in INI_SECTIONS:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            return {}
        section = INI_SECTIONS[name]
        return dict(parser[section]) if parser.has_section(section) else {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    table = data.get("tool", {}).get("pytest") if name == "pyproject.toml" else data.get("pytest")
    if not isinstance(table, dict):
        return {}
    legacy = table.get("ini_options")
    return legacy if isinstance(legacy, dict) else table


def _words(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return tuple(_split(value)) if isinstance(value, str) else ()


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _doctest_globs(words: Sequence[str]) -> list[str]:
    found = []
    for i, word in enumerate(words):
        if word.startswith(DOCTEST_OPTION + "="):
            found.append(word.split("=", 1)[1])
        elif word == DOCTEST_OPTION and i + 1 < len(words):
            found.append(words[i + 1])
    return found
