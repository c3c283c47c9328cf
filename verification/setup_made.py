"""What a diff's build script made in a verification checkout: the setup that runs once a diff changed a key file
runs the diff's code, in the checkout the tests then run in, before the protected files are restored.

Three kinds, read with git (submodules never entered: system/git.py NO_SUBMODULES) and a walk of what git does not
list file by file (ignored folders, nested repositories), outside the folders pytest never enters:
- `changed`: the tracked files it changed, and the new files that can change what a test run imports or how it is
  configured (Python modules, `.pth` files, runner configuration: RUNS_NAMES), for restore() to judge with the
  protect patterns like the diff's own changes;
- `caches`: bytecode (`.pyc`), which Python and pytest's assertion rewriting load in place of a source whose size
  and time it names, and links to folders, which pytest follows into folders it would skip: removed whatever their
  path, as no honest setup needs either there.
Other new files, such as test data a setup generates, are the environment. What it installs into the environment
it builds (a `.pth` in its virtualenv, an entry point) is not seen here: README, what Fleet does not protect against.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from system.files import link_on_the_way, remove_tree
from system.git import NO_SUBMODULES, git
from system.globs import matches_any
from verification.protect import DEFAULT_PROTECT, PYPROJECT_PYTEST

RUNS_SUFFIXES = (".py", ".pth")
RUNS_NAMES = tuple(p for p in DEFAULT_PROTECT if "/" not in p and p != PYPROJECT_PYTEST)  # conftest, pytest.ini...
UNWALKED = ("node_modules", "{arch}", "_darcs", "CVS")  # pytest's norecursedirs that no Python is imported from


@dataclass(frozen=True)
class SetupMade:
    changed: list[str]
    caches: list[str]

    def remove_caches(self, checkout: Path) -> None:
        """Delete the bytecode and folder links, never through a link on the way."""
        for path in self.caches:
            if link_on_the_way(checkout, path) is None:
                remove_tree(checkout / path)  # a link itself, never its target


def setup_made(checkout: Path, copied: Sequence[str] = ()) -> SetupMade:
    """What ran in checkout since the diff was applied to it (to the index and the files) changed or made; the
    repository's copied files (copied: their destinations) are Fleet's own."""
    status = ("status", NO_SUBMODULES, "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching")
    listing = git("--no-optional-locks", *status, "--no-renames", cwd=checkout, errors="surrogateescape")
    entries = [entry for entry in listing.split("\0") if len(entry) > 3]
    tracked = [entry[3:] for entry in entries if entry[:2] not in ("??", "!!") and entry[1] != " "]
    new = [path for entry in entries if entry[:2] in ("??", "!!") for path in _files(checkout, entry[3:])]
    new = [path for path in new if path not in copied]
    caches = [path for path in new if path.endswith(".pyc") or _folder_link(checkout / path)]
    runs = [path for path in new if path not in caches and _runs(path)]
    return SetupMade(tracked + runs, caches)


def _runs(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(RUNS_SUFFIXES) or matches_any(name, RUNS_NAMES)


def _folder_link(path: Path) -> bool:
    return path.is_symlink() and path.is_dir()


def _files(checkout: Path, entry: str) -> Iterator[str]:
    """entry, or the files and links under the folder entry, outside the folders no test run reads: hidden ones
    (`.git`, `.venv`), virtualenvs, node_modules. A folder walked is never one reached through a link."""
    if not entry.endswith("/"):
        yield entry
        return
    stack = [checkout / entry]  # not os.walk: a folder nested a thousand deep is no recursion here
    while stack:
        folder = stack.pop()
        if _unwalked(folder):
            continue
        try:
            children = list(os.scandir(folder))
        except OSError:
            continue
        for child in children:
            path = Path(child.path)
            if child.is_dir(follow_symlinks=False):
                stack.append(path)
            else:
                yield str(path.relative_to(checkout))


def _unwalked(folder: Path) -> bool:
    name = folder.name
    return name.startswith(".") or name in UNWALKED or (folder / "pyvenv.cfg").is_file()
