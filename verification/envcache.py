"""A cache of the environments setup commands build, keyed by the files that define them.

Decisions:
- The key hashes the setup command, PATH, the copied files' contents and every tracked file matching
  the key patterns (manifests and lock files by default), plus a scope: agent worktrees and verification
  checkouts never share an entry, so nothing built next to hidden tests can reach an agent.
- The environment is what the setup created: the untracked and ignored paths `git status` shows after
  it and not before (`.venv/`, `node_modules/`, `*.egg-info/`...). A setup that edits tracked files is
  not cached: restoring its outputs alone would not reproduce it.
- Entries are saved only from checkouts still at their base commit (before an agent or a diff touched
  them), so an entry never holds anything an agent wrote.
- Restore copies (`cp -a --reflink=auto`: copy-on-write where the filesystem can, a plain copy where it
  cannot), never hard links: through a link, an agent or the code under test could write into the cache
  and poison every later checkout. Pooled worktrees are wiped on release, so no lease inherits another's.
- Relocation: a virtualenv records its checkout's absolute path (script shebangs, pyvenv.cfg, editable
  installs' .pth and finder files). Text files and symbolic links holding the origin path are listed at
  save, and the path is replaced by the new checkout's at restore. Binary files keep the origin path:
  compiled bytecode records its source path for tracebacks only.
- The cache is bounded in bytes; after each save the least recently used entries go first, skipping
  entries being restored (a shared flock on the entry's lock file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from system.files import disk_usage, remove_tree, required_program, walk
from system.git import NO_SUBMODULES, checkout_git
from system.globs import matches_any
from system.mirror import try_lock

DEFAULT_KEY_FILES = (
    "requirements*.txt",
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "package.json",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "go.sum",
    "Cargo.lock",
)
SCAN_LIMIT_BYTES = 16 * 2**20  # larger files are assumed not to hold the checkout's path
TREE = "tree"
META = "meta.json"
USED = "used"


class NotCacheable(Exception):
    """This setup's result cannot be restored elsewhere; the message says why."""


@dataclass(frozen=True)
class Entry:
    """A cached environment: its folder, bytes on disk, when it was last restored or saved, and its metadata."""

    path: Path
    size: int
    used: float
    meta: dict[str, Any]

    def view(self) -> dict[str, Any]:
        return {
            "key": self.path.name,
            "scope": self.meta.get("scope", ""),
            "setup_cmd": self.meta.get("setup_cmd", ""),
            "paths": self.meta.get("created", []),
            "bytes": self.size,
            "last_used": datetime.fromtimestamp(self.used, UTC).isoformat(timespec="seconds"),
        }


def key_files_changed(changed: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The changed paths that define the environment (a diff touching one needs a fresh setup)."""
    return [path for path in changed if matches_any(path, patterns)]


class EnvCache:
    """Environments under root, at most max_bytes in all (0: the cache is off)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def key(self, checkout: Path, scope: str, setup_cmd: str, copied: Sequence[str], patterns: Sequence[str]) -> str:
        """The entry name for this checkout's setup: its command, PATH, copied files and key files' content."""
        digest = hashlib.sha256(json.dumps([scope, setup_cmd, os.environ.get("PATH", "")]).encode())
        for source in copied:
            digest.update(b"\0copy\0" + _read(Path(source)))
        tracked = checkout_git("ls-files", "-z", cwd=checkout).split("\0")
        for name in sorted(n for n in tracked if n and matches_any(n, patterns)):
            digest.update(b"\0file\0" + name.encode() + b"\0" + _read(checkout / name))
        return digest.hexdigest()[:32]

    def restore(self, key: str, checkout: Path) -> list[str] | None:
        """Copy entry key's environment into checkout, relocated to it; returns the paths it created, or None
        when there is no such entry."""
        if not self.enabled:
            return None
        with self.reading(key) as held:
            entry = self.root / key
            if not held or not (entry / META).is_file():
                return None
            meta = json.loads((entry / META).read_text())
            try:
                _copy_tree(entry / TREE, checkout)
                _relocate(checkout, meta["origin"], str(checkout.resolve()), meta["rewrite"], meta["links"])
            except BaseException:
                for name in meta["created"]:
                    with contextlib.suppress(OSError):
                        remove_tree(checkout / name)
                raise
            (entry / USED).touch()
        return list(meta["created"])

    def save(self, key: str, checkout: Path, created: Sequence[str], about: Mapping[str, str]) -> None:
        """Store the paths the setup created in checkout as entry key, then evict down to the size bound.

        about (the scope and the setup command) is kept with the entry for `fleet cache list`."""
        if not self.enabled or not created or (self.root / key / META).is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        try:
            (staging / TREE).mkdir(parents=True)
            _copy_paths(checkout, created, staging / TREE)
            origin = str(checkout.resolve())
            rewrite, links = _holding(staging / TREE, origin)
            size = disk_usage(staging)
            meta = {
                "origin": origin,
                "rewrite": rewrite,
                "links": links,
                "size": size,
                "created": list(created),
                **about,
            }
            (staging / META).write_text(json.dumps(meta))
            (staging / USED).touch()
            with self._lock(key) as held:
                if held and not (self.root / key).exists():
                    staging.rename(self.root / key)
        finally:
            with contextlib.suppress(OSError):
                remove_tree(staging)  # gone already once renamed into place
        self.evict(keep=key)

    def entries(self) -> list[Entry]:
        """Every complete entry, least recently used first."""
        found = []
        for meta_file in self.root.glob(f"*/{META}"):
            try:
                meta = json.loads(meta_file.read_text())
                used = (meta_file.parent / USED).stat().st_mtime
                found.append(Entry(meta_file.parent, int(meta["size"]), used, meta))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(found, key=lambda e: e.used)

    def clear(self) -> tuple[int, int]:
        """Delete every entry not being restored right now; returns (entries, bytes) deleted."""
        return self.evict(down_to=0)

    def evict(self, keep: str = "", down_to: int | None = None) -> tuple[int, int]:
        """Delete least recently used entries until the cache fits down_to (default: its bound), sparing keep
        and entries being restored; returns (entries, bytes) deleted."""
        limit = self.max_bytes if down_to is None else down_to
        entries = self.entries()
        total = sum(e.size for e in entries)
        evicted = freed = 0
        for entry in entries:
            if total <= limit:
                break
            if entry.path.name == keep:
                continue
            with self._lock(entry.path.name) as held:
                if not held:
                    continue  # being restored right now
                doomed = self.root / f".evicted-{uuid.uuid4().hex}"
                entry.path.rename(doomed)
            with contextlib.suppress(OSError):
                remove_tree(doomed)
            total -= entry.size
            evicted, freed = evicted + 1, freed + entry.size
        return evicted, freed

    @contextmanager
    def reading(self, key: str) -> Iterator[bool]:
        """Hold entry key against eviction (shared with other readers); yields False when it cannot."""
        with self._lock(key, shared=True) as held:
            yield held

    @contextmanager
    def _lock(self, key: str, shared: bool = False) -> Iterator[bool]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        handle = try_lock(locks / key, shared)
        try:
            yield handle is not None
        finally:
            if handle is not None:
                handle.close()


def untracked(checkout: Path) -> tuple[set[str], set[str]]:
    """(untracked or ignored paths, changed tracked paths) in checkout, as `git status` names them."""
    out = checkout_git(
        "status", NO_SUBMODULES, "--porcelain=v1", "-z", "--ignored", "--untracked-files=normal", cwd=checkout
    )
    loose: set[str] = set()
    changed: set[str] = set()
    fields = iter(out.split("\0"))
    for field in fields:
        if not field:
            continue
        code, path = field[:2], field[3:]
        if code in ("??", "!!"):
            loose.add(path.rstrip("/"))
        else:
            changed.add(path)
            if "R" in code or "C" in code:
                next(fields, None)  # the source path of a rename or copy
    return loose, changed


def created_by_setup(before: tuple[set[str], set[str]], after: tuple[set[str], set[str]]) -> list[str]:
    """The paths a setup created, from untracked() before and after it; NotCacheable if it edited tracked files."""
    edited = after[1] - before[1]
    if edited:
        raise NotCacheable(f"the setup changed tracked files ({', '.join(sorted(edited)[:3])})")
    new = sorted(after[0] - before[0])
    # `git status` lists ignored folders inside an untracked one (`.venv/.../__pycache__`) on their own.
    return [path for path in new if not any(path.startswith(other + "/") for other in new)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"(unreadable)"


def _copy_paths(checkout: Path, paths: Sequence[str], dest: Path) -> None:
    """cp -a each relative path of checkout into dest, keeping its folders (--parents)."""
    argv = [required_program("cp", None), "-a", "--reflink=auto", "--parents", "--", *paths, str(dest.resolve())]
    subprocess.run(argv, cwd=checkout, check=True, capture_output=True)


def _copy_tree(tree: Path, checkout: Path) -> None:
    """cp -a the contents of tree into checkout."""
    argv = [required_program("cp", None), "-a", "--reflink=auto", "--", f"{tree}/.", str(checkout)]
    subprocess.run(argv, check=True, capture_output=True)


def _holding(tree: Path, origin: str) -> tuple[list[str], list[str]]:
    """(text files, symbolic links) under tree that hold the origin path, relative to tree."""
    needle = origin.encode()
    texts: list[str] = []
    links: list[str] = []
    for folder, _dirs, files in walk(tree):
        for name in files:
            path = Path(folder, name)
            relative = str(path.relative_to(tree))
            if path.is_symlink():
                if os.readlink(path).startswith(origin):
                    links.append(relative)
            elif path.stat().st_size <= SCAN_LIMIT_BYTES:
                data = path.read_bytes()
                if needle in data and b"\0" not in data:
                    texts.append(relative)
        for name in _dirs:
            path = Path(folder, name)
            if path.is_symlink() and os.readlink(path).startswith(origin):
                links.append(str(path.relative_to(tree)))
    return texts, links


def _relocate(checkout: Path, origin: str, target: str, texts: Sequence[str], links: Sequence[str]) -> None:
    """Point the listed files and links at target instead of origin (the checkout the entry was saved from)."""
    if origin == target:
        return
    pattern = re.compile(re.escape(origin.encode()) + rb"(?![\w.-])")
    for name in texts:
        path = checkout / name
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR)
        path.write_bytes(pattern.sub(lambda _: target.encode(), path.read_bytes()))
        path.chmod(mode)
        if path.suffix == ".py":  # its bytecode still holds the old path, and may look fresh (same size, same second)
            for compiled in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                compiled.unlink()
    for name in links:
        path = checkout / name
        pointed = os.readlink(path)
        path.unlink()
        path.symlink_to(target + pointed[len(origin) :])
