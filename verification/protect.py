"""Protected paths: test files and test configuration that a diff may not change for a verification to count."""

from __future__ import annotations

import configparser
import os
import re
import stat
import threading
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from system.files import link_on_the_way, read_regular
from system.git import GitError, checkout_git
from system.globs import matches_any
from verification.collected import collected_globs, configured, runs_doctest_modules

MAX_CONFIG_BYTES = 4 * 2**20  # a configuration file read to compare its pytest table
# Not a path: stands for the pytest and coverage tables of any pyproject.toml (the rest of that file is the project's).
PYPROJECT_PYTEST = "pyproject.toml[tool.pytest]"
DEFAULT_PROTECT: tuple[str, ...] = (
    "test_*.py",
    "*_test.py",
    "**/tests/**",
    "**/conftest.py",
    "pytest.ini",
    ".pytest.ini",
    "pytest.toml",
    ".pytest.toml",
    "tox.ini",
    "setup.cfg",
    PYPROJECT_PYTEST,
    ".coveragerc",  # its fail_under fails a run under pytest-cov; its plugins run in the tests' process
    ".github/**",
    "sitecustomize.py",
    "usercustomize.py",
    # How other runners are told what to run and how to report: the command's configuration comes from the base.
    "Makefile",
    "noxfile.py",
    "jest.config.*",
    "vitest.config.*",
    ".mocharc*",
    "karma.conf.*",
    "phpunit.xml",
    "phpunit.xml.dist",
    ".rspec",
    # Fleet's settings in the repository (its test command, the variables its tests get): read again whenever the
    # repository is registered, so a diff that changes them is flagged for its reviewer.
    ".fleet.toml",
)
# Folder names of test suites: each holding a test file is a test folder, all of it protected (test_folders).
TEST_FOLDERS = ("test", "tests", "testing")
# pytest's own order of precedence for the configuration file of a directory.
PYTEST_CONFIGS = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def protected_changes(checkout: Path, paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The changed paths that fall under the protect patterns (a pyproject.toml only if its pytest table changed)."""
    globs = [p for p in patterns if p != PYPROJECT_PYTEST]
    check_pyproject = PYPROJECT_PYTEST in patterns
    return [
        path
        for path in paths
        if matches_any(path, globs) or (check_pyproject and _pytest_table_changed(checkout, path))
    ]


def _pytest_table_changed(checkout: Path, path: str) -> bool:
    if path.rsplit("/", 1)[-1] != "pyproject.toml":
        return False
    return _test_tables(_read(checkout, path)) != _test_tables(_head_text(checkout, path))


def restore(checkout: Path, paths: Sequence[str]) -> list[str]:
    """Put paths back as they are at HEAD: restore tracked files, delete new ones; return the paths."""
    if not paths:
        return []
    tracked = head_files(checkout)
    old = [p for p in paths if p in tracked]
    new = [p for p in paths if p not in tracked]
    if old:  # pathspecs go through stdin, literal: a file name from a diff is never an argument
        checkout_git(
            "--literal-pathspecs", "checkout", "HEAD", "--pathspec-from-file=-", "--pathspec-file-nul",
            cwd=checkout, input="\0".join(old), errors="surrogateescape",
        )  # fmt: skip
    for path in new:  # a link is removed, never followed: a diff's build script may have made it, or its folder
        target = checkout / path
        if (on_the_way := link_on_the_way(checkout, path)) is not None:
            if on_the_way.is_symlink():  # the file is not there, and the link that showed it there goes
                on_the_way.unlink()
        elif os.path.lexists(target) and not stat.S_ISDIR(os.lstat(target).st_mode):
            target.unlink()
    if new:  # out of the index too; a path that is no entry there (a link made in a folder's place) is passed over
        listed = "\0".join(new)
        checkout_git(
            "update-index", "--force-remove", "-z", "--stdin", cwd=checkout, input=listed, errors="surrogateescape"
        )
    return list(paths)


def head_files(checkout: Path, among: Sequence[str] = ()) -> set[str]:
    """Every file path tracked at HEAD (only those among the given root-level names, when named)."""
    names = ("--", *among) if among else ()
    out = checkout_git("--literal-pathspecs", "ls-tree", "-r", "-z", "--name-only", "HEAD", *names, cwd=checkout)
    return {p for p in out.split("\0") if p}


def pytest_config(checkout: Path) -> str | None:
    """The file pytest would read its configuration from at the checkout root at HEAD, if any."""
    return _base_config(checkout).name


def collected_file_globs(checkout: Path, command: str) -> tuple[str, ...]:
    """The globs of the files pytest collects tests from in checkout, as its configuration at HEAD and the command
    set them (verification/collected.py), and of every file in the test folders at HEAD: a file they match is a
    test file, whatever the protect patterns say."""
    config = _base_config(checkout)
    folders = tuple(f"{folder}/**" for folder in config.test_folders)  # a `*` in a name over-protects, never less
    return (*collected_globs(config.python_files, config.arguments, command), *folders)


def doctest_modules_run(checkout: Path, command: str) -> bool:
    """True when pytest, pinned to the base's configuration, runs modules' doctests with this command."""
    return runs_doctest_modules(_base_config(checkout).arguments, command)


class BaseConfig(NamedTuple):
    """What a commit's pytest configuration says: its file, what decides which files hold tests, and the folders
    named like test folders that hold them (test_folders)."""

    name: str | None
    python_files: tuple[str, ...]
    arguments: tuple[str, ...]  # its addopts and testpaths, words of pytest's command line
    test_folders: tuple[str, ...] = ()


def _base_config(checkout: Path) -> BaseConfig:
    """The configuration at HEAD. A commit never changes: for a checkout on a detached commit (every pooled one), git
    is asked once per repository and commit, not once per verification."""
    commit = detached_commit(checkout)
    if commit is None:
        return _base_config_at_head(checkout)
    with _configs_lock:
        if commit in _configs:
            return _configs[commit]
    found = _base_config_at_head(checkout)
    with _configs_lock:
        if len(_configs) >= CONFIGS_KEPT:
            _configs.clear()
        _configs[commit] = found
    return found


CONFIGS_KEPT = 1024
_configs: dict[tuple[Path, str], BaseConfig] = {}  # (repository's git dir, commit) -> its configuration
_configs_lock = threading.Lock()


def _base_config_at_head(checkout: Path) -> BaseConfig:
    tracked = head_files(checkout)
    config = BaseConfig(None, (), ())
    for name in PYTEST_CONFIGS:
        if name in tracked and _is_pytest_config(name, text := _head_text(checkout, name)):
            config = BaseConfig(name, *configured(name, text))
            break
    return config._replace(
        test_folders=test_folders(tracked, collected_globs(config.python_files, config.arguments, ""))
    )


def test_folders(tracked: Iterable[str], tests: Sequence[str]) -> tuple[str, ...]:
    """The folders named like test folders (TEST_FOLDERS) that hold a test file (tests: its globs) themselves. What
    else they hold (an `__init__.py` pytest imports before the tests, the helpers the tests import, a module of the
    code's name that the folder pytest puts first on sys.path would shadow) runs only under test."""
    folders = {path.rpartition("/")[0] for path in tracked if matches_any(path.rpartition("/")[2], tests)}
    return tuple(sorted(f for f in folders if f.rpartition("/")[2] in TEST_FOLDERS))


def detached_commit(checkout: Path) -> tuple[Path, str] | None:
    """(the repository's git dir, the commit) of a checkout whose HEAD is a commit, read from git's files as git
    reads them (a line's end is all git trims: a name with other trailing spaces is another folder to git); None for
    a branch, or a HEAD not as git writes it (git is asked then)."""
    try:
        dot_git = checkout / ".git"
        gitdir = dot_git
        if dot_git.is_file():  # a linked worktree: "gitdir: <its folder in the repository>"
            pointer = _git_line(dot_git)
            if not pointer.startswith("gitdir: "):
                return None
            gitdir = checkout / pointer.removeprefix("gitdir: ")
        head = (gitdir / "HEAD").read_text(encoding="utf-8")
        common = gitdir / "commondir"
        shared = (gitdir / _git_line(common) if common.is_file() else gitdir).resolve()
    except (OSError, UnicodeDecodeError):
        return None
    commit = head.removesuffix("\n")
    return (shared, commit) if HEX_COMMIT.fullmatch(commit) else None


def _git_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\r\n")


HEX_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _is_pytest_config(name: str, text: str | None) -> bool:
    if text is None:
        return False
    if name == "pyproject.toml":
        return pytest_table(text) is not None
    if name in ("tox.ini", "setup.cfg"):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            return False
        return parser.has_section("pytest" if name == "tox.ini" else "tool:pytest")
    return True


def _test_tables(text: str | None) -> object:
    """The [tool.pytest] and [tool.coverage] tables of a pyproject.toml text, which decide how its tests run and
    what fails them (coverage's fail_under); a marker when unparsable."""
    if text is None:
        return None
    try:
        tool = tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        return "<unparsable pyproject.toml>"
    return tool.get("pytest"), tool.get("coverage")


def pytest_table(text: str | None) -> object:
    """The [tool.pytest] table of a pyproject.toml text; None when absent, a marker when unparsable."""
    if text is None:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("pytest")
    except tomllib.TOMLDecodeError:
        return "<unparsable pyproject.toml>"


def _read(checkout: Path, path: str) -> str | None:
    """The file's text, when it is a regular file (never a link, a fifo or a device a build script left there)."""
    data = read_regular(checkout / path, MAX_CONFIG_BYTES)
    return data.decode("utf-8", errors="replace") if data is not None else None


def _head_text(checkout: Path, path: str) -> str | None:
    try:
        return checkout_git("cat-file", "blob", f"HEAD:{path}", cwd=checkout)
    except GitError:
        return None
