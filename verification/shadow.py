"""Files a diff adds or changes that would shadow a module the test run imports from outside the checkout.

The folders on `sys.path` during a pytest run include the checkout's root (a root conftest, `python -m`),
`src/` and each folder pytest inserts for its test files. A `json.py`, an `xml/` package or a `pluggy.py`
there is imported instead of the standard library's or the environment's module, and so can replace the
runner and its report. The shadowable names are read from the verification environment itself: its standard
library and the top-level modules of its installed distributions. Names the base commit already defines at
the same place are the project's own (iniconfig's `src/iniconfig` shadows the installed iniconfig by design).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.machinery
import importlib.metadata
import json
import os
import pkgutil
import shlex
import shutil
import subprocess
import sys
import threading
from collections import ChainMap
from collections.abc import Iterable, Mapping
from pathlib import Path

from system.files import read_regular, walk
from system.git import checkout_git

SHADOW_RULE = "shadowed module"
FLEET_DISTRIBUTION = "agent-fleet"
STARTUP_FILES = ("sitecustomize.py", "usercustomize.py")
TEST_FILE_SUFFIXES = ("_test.py",)
# Folder names projects use for their tests and docs: a new `test/` folder shadows nothing pytest imports.
PROJECT_FOLDERS = {"test", "tests", "testing", "docs", "doc", "examples", "scripts"}
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox"}
# Run by the environment's interpreter with -I -S: no checkout, no user site, no PYTHONPATH, and no `site`
# main, so no .pth file runs (a diff's setup may have written one). It lists the site folders; this process
# reads them as files (module_names) without running anything found there.
PROBE = "import json, site; print(json.dumps(site.getsitepackages()))"
MODULE_SUFFIXES = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)
MAX_METADATA_BYTES = 16 * 2**20  # a distribution's RECORD, METADATA or top_level.txt, a .pth file


def shadowing(checkout: Path, changed: Iterable[str], command: str, env: Mapping[str, str]) -> list[str]:
    """Why each changed file would shadow a module from outside the checkout (empty: none does)."""
    paths = [p for p in changed if (checkout / p).is_file()]
    if not paths:
        return []
    reasons = [reason for p in paths if (reason := startup_reason(p))]
    roots = import_roots(checkout)
    defined = {path: _defined_modules(path, roots) for path in paths}
    if not any(defined.values()):
        return reasons  # no changed file is a module (a text file, a data file): the environment is not asked
    names = environment_modules(interpreter(command, env, checkout), checkout)
    for path, modules in defined.items():
        for root, module in modules:
            if module in names and not _in_base(checkout, root, module):
                reasons.append(_reason(path, module, names[module]))
                break
    return reasons


def _defined_modules(path: str, roots: Iterable[str]) -> list[tuple[str, str]]:
    """(root, module) for each import root under which path defines a top-level module, project folders aside."""
    return [(root, m) for root in roots if (m := top_module(path, root)) and m not in PROJECT_FOLDERS]


def startup_reason(path: str) -> str:
    """Why path is refused wherever it is: Python runs it at startup when it is on the path."""
    name = Path(path).name
    if name in STARTUP_FILES:
        return f"{path} would run at interpreter startup ({name}): a project module cannot be named so; rename it"
    if name.endswith(".pth"):
        return f"{path} is a .pth file, which Python runs at startup from an import folder: remove it"
    return ""


def _reason(path: str, module: str, owner: str) -> str:
    return (
        f"{path} would shadow {owner}'s `{module}` module for the test runner: "
        f"rename it (any name that is not a module of the test environment is fine)"
    )


def top_module(path: str, root: str) -> str | None:
    """The top-level module name path defines when root is on sys.path (None: not under root)."""
    rel = Path(path) if not root else _relative(Path(path), Path(root))
    if rel is None:
        return None
    head = rel.parts[0]
    if len(rel.parts) > 1:
        return head if head.isidentifier() else None
    stem = head.split(".", 1)[0]
    suffixes = (".py", ".pyc", ".so", ".pyd", ".pyw")
    return stem if head.endswith(suffixes) and stem.isidentifier() else None


def _relative(path: Path, root: Path) -> Path | None:
    return path.relative_to(root) if path.is_relative_to(root) and path != root else None


def _in_base(checkout: Path, root: str, module: str) -> bool:
    """True when the base commit already defines module at root (asked only for a name that matched)."""
    listing = (
        checkout_git("ls-tree", "HEAD", f"{root}/", cwd=checkout)
        if root
        else checkout_git("ls-tree", "HEAD", cwd=checkout)
    )
    for entry in listing.splitlines():
        kind, name = entry.split(" ", 2)[1], Path(entry.split("\t", 1)[1]).name
        if top_module(name if kind == "blob" else f"{name}/__init__.py", "") == module:
            return True
    return False


def import_roots(checkout: Path) -> list[str]:
    """The checkout's folders that end up on sys.path in a pytest run: the root, src/, and the folder pytest
    inserts for each test file and conftest (the first one upwards that is not a package)."""
    roots = {"", "src"}
    for folder, dirs, files in walk(checkout):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        if any(_is_test_file(f) for f in files):
            roots.add(_basedir(Path(folder), checkout))
    return sorted(roots)


def _is_test_file(name: str) -> bool:
    return (
        name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith(TEST_FILE_SUFFIXES)
    )


def _basedir(folder: Path, checkout: Path) -> str:
    while folder != checkout and (folder / "__init__.py").is_file():
        folder = folder.parent
    return "" if folder == checkout else folder.relative_to(checkout).as_posix()


def interpreter(command: str, env: Mapping[str, str], checkout: Path) -> str:
    """The Python the test command runs: its first word named like an interpreter, else the one next to its
    `pytest`, else this process's. A relative path (`.venv/bin/python`) is the checkout's."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    path = env.get("PATH", os.defpath)
    for word in words:
        word = str(checkout / word) if "/" in word and not word.startswith("/") else word
        name = Path(word).name
        if name.startswith("python") and (found := shutil.which(word, path=path)):
            return found
        if name in ("pytest", "py.test") and (found := shutil.which(word, path=path)):
            sibling = Path(found).parent / "python"
            return str(sibling) if sibling.exists() else sys.executable
    return sys.executable


def environment_modules(python: str, checkout: Path) -> Mapping[str, str]:
    """Top-level module names the interpreter's environment provides, each with where it comes from.

    An interpreter inside the checkout (a `.venv` the setup built, which may have run the diff's code) is never
    run: its site folders are read, only where they are inside the checkout, and the folders its .pth files name
    are not (those outside would tell the diff which module names a folder of the host holds)."""
    if Path(os.path.abspath(python)).is_relative_to(checkout):
        inside = checkout.resolve()
        sites = Path(python).parent.parent.glob("lib/python*/site-packages")
        return module_names([str(p) for p in sites if _resolves_inside(p, inside)], checkout, trusted=False)
    return _outside_modules(python, checkout)


def _resolves_inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except (RuntimeError, OSError):  # a link loop: Python 3.12 raises where 3.11 gives the path up to it
        return False


def _outside_modules(python: str, checkout: Path) -> Mapping[str, str]:
    folders = _site_folders(python)
    return module_names(folders, checkout) if folders else _standard_library()


@functools.lru_cache(maxsize=16)
def _site_folders(python: str) -> tuple[str, ...]:
    """The site folders of an interpreter outside any checkout (empty when it cannot say)."""
    try:
        out = subprocess.run([python, "-I", "-S", "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
        found = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    return tuple(str(item) for item in found) if isinstance(found, list) else ()


def module_names(folders: Iterable[str], checkout: Path, trusted: bool = True) -> Mapping[str, str]:
    """The standard library's names and the top-level modules in folders, read as files: distributions'
    metadata, modules and packages, and the folders .pth files name as paths (never inside the checkout). Folders
    that are not trusted (a checkout's virtualenv, which a diff's build script made) are read through no link and
    their .pth files are not read: what either names could be any folder of the host.

    The folders' own names are read once per state of the folders and never copied (thousands of names, asked
    about a few per verification); only what the .pth folders outside this checkout add is gathered here."""
    roots = tuple(str(f) for f in folders if Path(f).is_dir())
    site, extras = _site_index(roots, tuple(_mtime(r) for r in roots), trusted)
    inside = checkout.resolve()
    added = {
        module: "the environment" for extra, modules in extras if not extra.is_relative_to(inside) for module in modules
    }
    return ChainMap(site, added)  # the site's owner wins, as it comes first on sys.path


_indexing = threading.Lock()  # one thread reads a folder state; the others wait for its answer


def _site_index(
    roots: tuple[str, ...], mtimes: tuple[int, ...], trusted: bool
) -> tuple[dict[str, str], list[tuple[Path, tuple[str, ...]]]]:
    with _indexing:
        named = _pth_folders(roots, mtimes) if trusted else ()
        extras = [(extra, _folder_modules(extra, _mtime(str(extra)))) for extra in named]
        return _site_modules(roots, mtimes, trusted), extras


@functools.lru_cache(maxsize=16)
def _site_modules(roots: tuple[str, ...], mtimes: tuple[int, ...], trusted: bool) -> dict[str, str]:
    """What roots provide, read once per state of the folders (an install changes a folder's mtime)."""
    found = _standard_library()
    for dist in _distributions(roots, trusted):
        try:
            name, tops = dist.metadata["Name"], _distribution_tops(dist)
        except (ValueError, TypeError, csv.Error, RuntimeError, OSError):  # a malformed RECORD, a link loop (3.12)
            continue
        if name == FLEET_DISTRIBUTION:
            continue  # Fleet's own packages are never imported by a test run (its plugin imports only pytest)
        for top in tops:
            found.setdefault(top, f"the installed package {name}")
    listed = [module.name for module in pkgutil.iter_modules(list(roots))] if trusted else _unlinked_modules(roots)
    for module in listed:
        found.setdefault(module, "the environment")
    return found  # cached: every caller shares it (module_names hands it out read-only)


def _unlinked_modules(roots: Iterable[str]) -> list[str]:
    """The modules and packages in roots, as pkgutil lists them, but for links, which are never entered or named."""
    found = []
    for root in roots:
        with contextlib.suppress(OSError), os.scandir(root) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir() and entry.name.isidentifier() and _is_package(entry.path):
                    found.append(entry.name)
                elif (module := _module_name(entry.name)) and module.isidentifier() and entry.is_file():
                    found.append(module)
    return found


def _is_package(folder: str) -> bool:
    with contextlib.suppress(OSError):
        return any(_module_name(name) == "__init__" for name in os.listdir(folder))
    return False


def _module_name(file_name: str) -> str | None:
    """The module a file of this name is (`x.py`, `x.cpython-311-x86_64-linux-gnu.so`), as inspect.getmodulename."""
    suffix = next((s for s in MODULE_SUFFIXES if file_name.endswith(s)), None)
    return file_name[: -len(suffix)] if suffix else None


@functools.lru_cache(maxsize=16)
def _pth_folders(roots: tuple[str, ...], mtimes: tuple[int, ...]) -> tuple[Path, ...]:
    """The folders the roots' .pth files name, resolved; read once per state of the roots."""
    return tuple(Path(extra).resolve() for extra in _pth_paths(map(Path, roots)) if Path(extra).is_dir())


@functools.lru_cache(maxsize=64)
def _folder_modules(folder: Path, mtime: int) -> tuple[str, ...]:
    return tuple(module.name for module in pkgutil.iter_modules([str(folder)]))


def _mtime(folder: str) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return 0


def _standard_library() -> dict[str, str]:
    return {name: "the standard library" for name in (*sys.stdlib_module_names, *sys.builtin_module_names)}


class _Read(importlib.metadata.PathDistribution):
    """A distribution's metadata, each file read only as a regular file, bounded (never a link, fifo or device)."""

    def read_text(self, filename: str | os.PathLike[str]) -> str | None:
        data = read_regular(Path(str(self._path), filename), MAX_METADATA_BYTES)
        return data.decode("utf-8", errors="replace") if data is not None else None


def _distributions(roots: Iterable[str], trusted: bool) -> list[importlib.metadata.Distribution]:
    """The distributions installed in roots: their metadata folders (not trusted, a link is not one)."""
    found: list[importlib.metadata.Distribution] = []
    for root in roots:
        with contextlib.suppress(OSError), os.scandir(root) as entries:
            found += [
                _Read(Path(entry.path))
                for entry in entries
                if entry.name.endswith((".dist-info", ".egg-info")) and entry.is_dir(follow_symlinks=trusted)
            ]
    return found


def _distribution_tops(dist: importlib.metadata.Distribution) -> list[str]:
    tops = (dist.read_text("top_level.txt") or "").split()
    files = dist.files or ()
    tops += [f.parts[0] for f in files if len(f.parts) > 1 and f.parts[0] not in ("..", "__pycache__")]
    tops += [f.parts[0].split(".")[0] for f in files if len(f.parts) == 1]
    return [top for top in tops if top.isidentifier()]


def _pth_paths(roots: Iterable[Path]) -> list[str]:
    """The folders .pth files add to sys.path (their plain path lines; `import` lines are never run)."""
    paths = []
    for root in roots:
        for pth in root.glob("*.pth"):
            data = read_regular(pth, MAX_METADATA_BYTES)
            lines = data.decode("utf-8", errors="replace").splitlines() if data is not None else []
            paths += [str(root / line.strip()) for line in lines if line.strip() and not _pth_code(line)]
    return paths


def _pth_code(line: str) -> bool:
    return line.startswith(("#", "import ", "import\t"))
