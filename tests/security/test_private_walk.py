"""What a walk finds private under a folder: what a sandbox covers there (system/covers.py)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from system.private_walk import PrivateWalk, TooLarge, WalkFailed, private_in


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


def test_a_socket_or_fifo_others_may_not_both_read_and_write_is_private(tmp_path: Path) -> None:
    # An ssh-agent's socket (0600) left in a folder on the PATH: connecting takes write, and the walk looked only at
    # files and folders, so every sandbox could sign with its owner's keys.
    private, shared = [], []
    for name, mode in (("agent.sock", 0o600), ("listen-only.sock", 0o644), ("open.sock", 0o666)):
        with socket.socket(socket.AF_UNIX) as bound:
            bound.bind(str(tmp_path / name))
        (tmp_path / name).chmod(mode)
        (shared if mode == 0o666 else private).append(tmp_path / name)
    for name, mode in (("gpg-fifo", 0o600), ("read-only-fifo", 0o604), ("open-fifo", 0o666)):
        os.mkfifo(tmp_path / name, mode)
        os.chmod(tmp_path / name, mode)
        (shared if mode == 0o666 else private).append(tmp_path / name)
    assert sorted(private_in(tmp_path)) == sorted(private)


def test_a_walk_past_its_bound_is_too_large(tmp_path: Path) -> None:
    for n in range(30):
        (tmp_path / f"m{n}.py").write_text("")
    with pytest.raises(TooLarge, match="more than 10 entries"):
        private_in(tmp_path, 10)
    assert private_in(tmp_path, 30) == []


FIND = shutil.which("find") or "/usr/bin/find"


def find_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path, script: str) -> None:
    """A `find` ahead of the real one on the worker's PATH (a toolchain's, BusyBox's), running script."""
    folder.mkdir()
    (folder / "find").write_text(f"#!/bin/sh\n{script}\n")
    (folder / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', os.defpath)}")


def toolchain_with_tokens(root: Path) -> Path:
    (root / "lib").mkdir(parents=True)
    for n in range(40):
        (root / "lib" / f"module{n}.py").write_text("")
        (root / "lib" / f"token{n}.conf").write_text("token")
        (root / "lib" / f"token{n}.conf").chmod(0o600)
    return root


@pytest.mark.parametrize(
    "script,why",
    [
        ('echo "find: unrecognized: -printf" >&2; exit 1', "exit status 1"),  # BusyBox's: it printed nothing
        (f'"{FIND}" "$@" | head -c 200; kill -9 $$', "killed by signal 9"),  # the OOM killer, mid-walk
        # its output ends inside a path (head alone may cut right after a record, as its folder's name's length has it)
        (f'"{FIND}" "$@" | head -c 200; printf P/lib/tok', "cut short"),
    ],
)
def test_a_find_that_did_not_look_through_the_folder_is_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, why: str
) -> None:
    # Its empty or partial output was taken for the answer: the tokens it never named were left uncovered.
    toolchain = toolchain_with_tokens(tmp_path / "toolchain")
    find_on_path(monkeypatch, tmp_path / "bin", script)
    with pytest.raises(WalkFailed, match=why):
        private_in(toolchain)


def test_a_folder_changing_during_the_walk_is_still_an_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # find ends with status 1 when a folder it listed was removed before it got there (a package upgraded).
    toolchain = toolchain_with_tokens(tmp_path / "toolchain")
    find_on_path(monkeypatch, tmp_path / "bin", f'"{FIND}" "$@"; exit 1')
    assert len(private_in(toolchain)) == 40


def test_a_find_that_hangs_or_is_missing_is_a_failed_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A hung NFS or FUSE folder kept every sandbox start waiting; a PATH without find stopped the worker's start.
    toolchain = toolchain_with_tokens(tmp_path / "toolchain")
    find_on_path(monkeypatch, tmp_path / "bin", "exec sleep 30")
    started = time.monotonic()
    with pytest.raises(WalkFailed, match="within 0.5 s"):
        PrivateWalk(toolchain, seconds=0.5).answer()
    assert time.monotonic() - started < 10
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    walk = PrivateWalk(toolchain)
    with pytest.raises(WalkFailed, match="find is not in any absolute folder of the PATH"):
        walk.answer()
