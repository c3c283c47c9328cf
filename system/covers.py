"""What a sandbox covers inside the folders it shows read-only (system/sandbox.py): the secrets known by name, and
whatever there others may not read.

A sandbox is its worker's user in a namespace of its own (root, for a root worker), so a file only that user may read
is read through its owner's permission: in /etc (an SSH host key, a TLS private key) and in the toolchains shown from
a home folder alike (a pip.conf with an index's token in a virtualenv, a file of ~/.pyenv, ~/.cargo or ~/.rustup).
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from system.private_walk import PrivateWalk, TooLarge, WalkFailed, private_in
from system.tmpfs import cover_folder

log = logging.getLogger(__name__)

# Readable by root alone, and a root worker's sandbox is root in its own namespace: covered, as is whatever else in
# /etc others may not read (private_in).
ETC_SECRETS = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
    "/etc/ssl/private", "/etc/credstore", "/etc/credstore.encrypted", "/etc/redis", "/etc/mysql/debian.cnf",
    "/etc/postgresql/.pgpass",
)  # fmt: skip
# The worker user's credential stores: an agent gets its keys from the environment allow-list, never from these.
CREDENTIAL_STORES = (
    ".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".gnupg", ".netrc", ".git-credentials",
    ".pgpass", ".pypirc", ".npmrc", ".cargo/credentials", ".cargo/credentials.toml", ".config/gh",
    ".config/hub", ".local/share/keyrings", ".password-store", ".vault-token",
)  # fmt: skip
# The entries of one shown toolchain looked through, once per worker process, by find: about 4.5 µs each on a loaded
# two-core machine (a virtualenv of 22,000 entries: 0.08 s; ~/.pyenv or ~/.rustup, 120,000 to 130,000: 0.6 s). Past
# it the folder is covered whole: every sandbox start waits while settings are built (sandbox._SHOWN_ONCE).
MOST_LOOKED_AT = 500_000
# A cover is a mount at every sandbox start: past this many in one folder, the folder is covered whole.
MOST_COVERS = 1_000
# What becomes private later (an index's token written into a virtualenv's pip.conf) is covered within about this
# long: the toolchains are looked through again in the background, then the sandboxes' settings built again.
LOOK_AGAIN_SECONDS = 300.0


def covered(hidden: Sequence[Path], shown: Sequence[Path], toolchains: Sequence[Path]) -> tuple[Path, ...]:
    """What to cover inside the shown folders: the hidden paths, ETC_SECRETS and what others may not read in /etc
    (looked at for each new settings: what becomes private later is covered) and in the toolchains (private_shown)."""
    private = [path for folder in toolchains for path in private_shown(folder)]
    found = outermost([*hidden, *map(Path, ETC_SECRETS), *private_in(Path("/etc")), *private])
    return tuple(path for path in found if any(path.is_relative_to(folder) for folder in shown))


def cover_args(paths: Sequence[Path]) -> list[str]:
    """bwrap's arguments that cover paths as they are at this start (sandbox_start.prepared): a folder with an empty
    tmpfs of the sandbox's own, anything else (a file, a socket, a fifo) with /dev/null, which no one can connect to
    and the sandbox cannot open (bwrap binds it without devices). One removed since the settings were built is
    skipped: bwrap, unable to make it in a read-only folder, would fail the sandbox. One stat each."""
    args: list[str] = []
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            continue
        args += cover_folder(str(path)) if is_dir else empty_file_over(str(path))
    return args


class _Toolchain:
    """One toolchain's walk, started once, and its answer, made once (a warning names what is covered)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.walk = folder, PrivateWalk(folder, MOST_LOOKED_AT)
        self._answering = threading.Lock()
        self._answer: tuple[Path, ...] | None = None
        self._taken_again = True  # no walk started again, or its answer taken

    def answer(self) -> tuple[Path, ...]:
        with self._answering:
            if self._answer is None:
                self._answer = _private_or_whole(self.folder, self.walk, None)
            return self._answer

    def look_again(self) -> None:
        self.walk, self._taken_again = PrivateWalk(self.folder, MOST_LOOKED_AT), False

    def answered_again(self) -> bool:
        """Whether the walk started again is over; its answer is then this toolchain's (the one before, when find
        failed: what was covered stays covered)."""
        if self._taken_again:
            return True
        if not self.walk.done():
            return False
        with self._answering:
            self._answer = _private_or_whole(self.folder, self.walk, self._answer)
            self._taken_again = True
        return True


class _LookingAgain:
    """When the toolchains are looked through again, and which settings sandboxes' covers are of (generation)."""

    def __init__(self) -> None:
        self.generation, self.under_way = 0, False
        self.due = time.monotonic() + LOOK_AGAIN_SECONDS


_TOOLCHAINS: dict[Path, _Toolchain] = {}
_STARTING = threading.Lock()
_AGAIN = _LookingAgain()


def generation() -> int:
    """Which covers sandboxes' settings are of (sandbox._shown is built again, /etc walked again, for a new one):
    every LOOK_AGAIN_SECONDS the toolchains are looked through again beside the sandboxes, which keep the covers they
    had until every walk is over. A clock read per sandbox start, and no lock, between times."""
    if time.monotonic() < _AGAIN.due:
        return _AGAIN.generation
    with _STARTING:
        if not _AGAIN.under_way:
            for toolchain in _TOOLCHAINS.values():
                toolchain.look_again()
            _AGAIN.under_way = True
        if all(toolchain.answered_again() for toolchain in _TOOLCHAINS.values()):
            _AGAIN.generation, _AGAIN.under_way = _AGAIN.generation + 1, False
            _AGAIN.due = time.monotonic() + LOOK_AGAIN_SECONDS
        return _AGAIN.generation


def start_looking(folders: Sequence[Path]) -> None:
    """Start looking through these toolchains, each once per worker process (private_shown answers): the worker
    starts the walks of the toolchains on its PATH as it starts (sandbox.look_through_toolchains)."""
    for folder in folders:
        _toolchain(folder)


def private_shown(folder: Path) -> tuple[Path, ...]:
    """What others may not read in a toolchain a sandbox shows, looked for once per worker process (a walk of
    ~/.pyenv takes most of a second, and every repository's settings show it): a walk under way is waited for, never
    started again. What its owner makes private there later is covered once it is looked through again (generation)."""
    return _toolchain(folder).answer()


def _toolchain(folder: Path) -> _Toolchain:
    with _STARTING:
        if folder not in _TOOLCHAINS:
            _TOOLCHAINS[folder] = _Toolchain(folder)
        return _TOOLCHAINS[folder]


def covered_whole(readable: Sequence[Path]) -> list[str]:
    """Why each of these folders a sandbox shows is hidden whole, for the attempt's warnings: an agent whose
    toolchain was installed with umask 077 finds no Python in its sandbox, and its user should read why."""
    if not _COVERED_WHOLE:
        return []
    return [why for folder in outermost(readable) if (why := _COVERED_WHOLE.get(folder)) is not None]


_COVERED_WHOLE: dict[Path, str] = {}


def _private_or_whole(folder: Path, walk: PrivateWalk, before: tuple[Path, ...] | None) -> tuple[Path, ...]:
    """The walk's answer; the folder itself when it holds more than MOST_LOOKED_AT entries or MOST_COVERS private
    ones, or find failed and there is no answer `before` to keep (covered_whole says why). A warning names it, and
    the first path found private, unless the answer before was the same."""
    try:
        found = walk.answer()
    except TooLarge:
        return _whole(folder, f"over {MOST_LOOKED_AT:,} entries to look through for files others may not read")
    except WalkFailed as exc:
        if before is None:
            return _whole(folder, str(exc))
        log.warning("sandbox: %s keeps the covers it had: %s", folder, exc)
        return before
    if len(found) > MOST_COVERS:
        return _whole(folder, f"{len(found):,} paths in it others may not read ({found[0]}, ...)")
    _COVERED_WHOLE.pop(folder, None)
    if found and tuple(found) != before:
        log.warning(
            "sandbox: %d paths in %s that others may not read are covered (%s, ...)", len(found), folder, found[0]
        )
    return tuple(found)


def _whole(folder: Path, why: str) -> tuple[Path, ...]:
    if folder not in _COVERED_WHOLE:
        log.warning("sandboxes show %s as an empty folder: %s", folder, why)
    _COVERED_WHOLE[folder] = f"sandboxes show {folder} as an empty folder: {why}"
    return (folder,)


def outermost(paths: Sequence[Path]) -> list[Path]:
    """Resolved, existing, without duplicates or paths inside another one (showing or covering the outer one does)."""
    found = sorted({p.resolve() for p in paths if p.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in found:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def empty_file_over(path: str) -> list[str]:
    """bwrap's arguments that show an empty file at path."""
    return ["--ro-bind", "/dev/null", path]


@functools.lru_cache(maxsize=16)
def credential_stores(home: Path) -> tuple[Path, ...]:
    """The credential stores present in home (the worker user's): covered wherever a shown folder holds them."""
    return tuple(home / name for name in CREDENTIAL_STORES if (home / name).exists())
