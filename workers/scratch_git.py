"""A scratch object folder and index for hashing a checkout's changes without writing to the mirror."""

from __future__ import annotations

import shutil
from pathlib import Path


def scratch_objects(tmp: Path, gitdir: Path, mirror: Path) -> dict[str, str]:
    """git's environment for writing objects and the index under tmp while reading the mirror's objects too."""
    index = tmp / "index"
    if (gitdir / "index").is_file():
        # Its stat data spares git from hashing unchanged files again. copy2 keeps the index file's mtime, which
        # git's racy-entry check compares with each entry's: a fresh mtime would make an edit that kept the
        # file's size within the second of the checkout look unchanged (same-size `a - b` -> `a + b` fixes did).
        shutil.copy2(gitdir / "index", index)
    (tmp / "objects").mkdir()
    return {
        "GIT_INDEX_FILE": str(index),
        "GIT_OBJECT_DIRECTORY": str(tmp / "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": _quoted_for_git(mirror / "objects"),
    }


def _quoted_for_git(path: Path) -> str:
    """path as one entry of a colon-separated git path list (git reads a double-quoted entry C-style)."""
    text = str(path)
    if ":" not in text and not text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
