"""What a walk finds private under a folder: what a sandbox covers there (system/covers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from system.private_walk import TooLarge, private_in


def test_a_walk_finds_what_others_may_not_read_and_nothing_else(tmp_path: Path) -> None:
    # The folder others may not enter is named, not what it holds; a link to a private file is not (what it names
    # is looked at where it is); a name with a newline or a non-UTF-8 byte comes back as it is.
    root = tmp_path / "toolchain"
    (root / "lib" / "site").mkdir(parents=True)
    (root / "lib" / "site" / "module.py").write_text("")
    keys = root / "lib" / "keys"
    keys.mkdir()
    (keys / "inside").write_text("secret")
    keys.chmod(0o700)
    token = root / "pip.conf"
    token.write_text("token")
    token.chmod(0o600)
    odd = root / "lib" / os.fsdecode(b"odd\nname\xff")
    odd.write_text("token")
    odd.chmod(0o640)
    listed_only = root / "listed-only"
    listed_only.mkdir()
    listed_only.chmod(0o701)  # others may enter but not list it: what it holds is named by the folder
    (root / "link").symlink_to(token)
    (root / "fifo-free.txt").write_text("")
    assert sorted(private_in(root)) == sorted([keys, token, odd, listed_only])


def test_a_walk_past_its_bound_is_too_large(tmp_path: Path) -> None:
    for n in range(30):
        (tmp_path / f"m{n}.py").write_text("")
    with pytest.raises(TooLarge, match="more than 10 entries"):
        private_in(tmp_path, 10)
    assert private_in(tmp_path, 30) == []
