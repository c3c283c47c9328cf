"""What a diff's build script made in a verification checkout: the setup that runs once a diff changed a key file
runs the diff's code, in the checkout the tests then run in, before the protected files are restored.

Read with git (submodules never entered: system/git.py NO_SUBMODULES) and a walk of what git does not list file by
file (ignored folders, nested repositories, submodules' folders), outside the folders a test run never reads:
hidden ones (`.git`, `.venv`), virtualenvs and conda environments, node_modules, and build and dist, which pytest
skips too. Two kinds:
- `changed`: the tracked files it changed, and the new files that can change what a test run imports or how it is
  configured (Python modules and extensions, `.pth` files, a test runner's configuration: RUNS_NAMES), for
  restore() to judge with the protect patterns like the diff's own changes;
- `caches`: bytecode (`.pyc`), which Python and pytest's assertion rewriting load in place of a source whose size
  and time it names, and links to folders, which pytest follows into folders it would skip: removed.
Other new files, such as test data a setup generates, are the environment. What it installs into the environment
it builds (a `.pth` in its virtualenv, an entry point) is not seen here: README, what Fleet does not protect against.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from system.files import link_on_the_way, remove_tree, walk
from system.git import NO_SUBMODULES, checkout_git
from system.globs import matches_any

RUNS_SUFFIXES = (".py", ".pth", *EXTENSION_SUFFIXES)
RUNS_NAMES = (
    "conftest.py", "sitecustomize.py", "usercustomize.py", "pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml",
    "tox.ini", "jest.config.*", "vitest.config.*", ".mocharc*", "karma.conf.*", "phpunit.xml", "phpunit.xml.dist",
    ".rspec",
)  # fmt: skip
UNREAD = ("node_modules", "build", "dist", "{arch}", "_darcs", "CVS")  # pytest's norecursedirs, but hidden ones
GITLINK = "160000"


@dataclass(frozen=True)
class SetupMade:
    changed: list[str]
    caches: list[str]

    def remove_caches(self, checkout: Path) -> None:
        """Delete the bytecode and folder links, never through a link on the way."""
        for path in self.caches:
            if link_on_the_way(checkout, path) is None:
                remove_tree(checkout / path)  # a link itself, never its target


def setup_made(checkout: Path, copied: Sequence[str] = (), tests: Sequence[str] = ()) -> SetupMade:
    """What ran in checkout since the diff was applied to it (to the index and the files) changed or made; the
    repository's copied files (copied: their destinations) are Fleet's own, copied again after it; tests: the globs
    of the files the test runner collects (a doctest text file among them), made files that count as changed too."""
    status = ("status", NO_SUBMODULES, "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching")
    listing = checkout_git("--no-optional-locks", *status, "--no-renames", cwd=checkout, errors="surrogateescape")
    entries = [entry for entry in listing.split("\0") if len(entry) > 3]
    tracked = [entry[3:] for entry in entries if entry[:2] not in ("??", "!!") and entry[1] != " "]
    loose = [entry[3:] for entry in entries if entry[:2] in ("??", "!!")] + [f"{link}/" for link in _gitlinks(checkout)]
    skip = {os.path.normpath(dest).lstrip("/") for dest in copied}
    new = {path for entry in loose for path in _files(checkout, entry) if not _unread(checkout, path)} - skip
    caches = {path for path in new if path.endswith(".pyc") or _folder_link(checkout / path)}
    runs = {path for path in new - caches if _runs(path) or matches_any(path, tests)}
    return SetupMade(sorted({*tracked, *runs} - skip), sorted(caches))


def _gitlinks(checkout: Path) -> list[str]:
    """The submodules' folders: git lists nothing in them (NO_SUBMODULES), and pytest enters them."""
    listing = checkout_git("ls-files", "-s", "-z", cwd=checkout, errors="surrogateescape")
    return [entry.split("\t", 1)[1] for entry in listing.split("\0") if entry.startswith(GITLINK + " ")]


def _runs(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(RUNS_SUFFIXES) or matches_any(name, RUNS_NAMES)


def _folder_link(path: Path) -> bool:
    return path.is_symlink() and path.is_dir()


def _files(checkout: Path, entry: str) -> Iterator[str]:
    """entry, or the files and links under the folder entry (never a folder reached through a link)."""
    if not entry.endswith("/"):
        yield entry
        return
    top = checkout / entry
    if top.is_symlink() or _unread_folder(top):
        return
    for folder, dirs, files in walk(top):  # never into a link, and a folder nested a thousand deep is no recursion
        dirs[:] = [name for name in dirs if not _unread_folder(Path(folder, name))]
        yield from (str(Path(folder, name).relative_to(checkout)) for name in files)


def _unread(checkout: Path, path: str) -> bool:
    """Whether path is inside a folder no test run reads (any of its folders, not only the one git listed)."""
    folder = checkout
    for part in Path(path).parts[:-1]:
        folder = folder / part
        if _unread_folder(folder):
            return True
    return False


def _unread_folder(folder: Path) -> bool:
    name = folder.name
    environment = (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta" / "history").is_file()
    return name.startswith(".") or name in UNREAD or environment
