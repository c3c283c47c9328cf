"""Attempt folders: a sandboxed attempt's folder is kept emptied for the next, and nothing an attempt left survives."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from system.files import write_over
from verification.confined import fresh_folder
from workers.agents.base import AgentOptions
from workers.agents.contracts import AgentTask
from workers.agents.gemini import GeminiAgent
from workers.agents.opencode import OpenCodeAgent
from workers.attempt_folders import FS_IOC_GETFLAGS, UNCONFINED, AttemptFolders
from workers.spares import remove_stale


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def _used(folder: Path) -> None:
    """What an attempt leaves: the skeleton, its prompt, files in HOME, reports, a git dir."""
    for sub in ("agent/tmp", "home/.cache", "home/.config", "candidate/home", "candidate/tmp", "agent-git/objects"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "agent" / "prompt.md").write_text("fix it")
    (folder / "agent" / "tmp" / "scratch").write_text("x")
    (folder / "home" / ".cache" / "pip").write_text("x")
    (folder / "home" / ".config" / "tool.toml").write_text("x")
    (folder / "candidate" / "report.xml").write_text("<testsuite/>")


FS_IOC_SETFLAGS = 0x40086602
NOATIME = 0x80  # chattr +A
SKELETON = [
    "agent",
    "agent/prompt.md",
    "agent/tmp",
    "candidate",
    "candidate/home",
    "candidate/tmp",
    "home",
    "home/.cache",
]


def test_a_sandboxed_attempts_folder_is_the_next_ones_with_only_empty_skeleton_folders(tmp_path: Path) -> None:
    folders = AttemptFolders(tmp_path)
    first = folders.folder(1)
    _used(first)
    home = (first / "home").stat().st_ino
    folders.discard(1)
    assert not first.exists()
    second = folders.folder(2)
    assert (second / "home").stat().st_ino == home  # the same folders: none made for the second attempt
    assert _tree(second) == SKELETON
    assert (second / "agent" / "prompt.md").read_text() == "fix it"  # kept to be written over, not made again
    assert folders.folder(2) == second  # asked again (its verification), the same folder


def test_an_unsandboxed_attempts_folder_is_deleted(tmp_path: Path) -> None:
    """Marked before its unsandboxed command ran: where the folder's fate was decided at the attempt's end by whether
    a sandbox could start then (bubblewrap installed meanwhile), it was kept, and a process still running wrote in."""
    folders = AttemptFolders(tmp_path)
    _used(folders.folder(1))
    folders.mark_unconfined(1)
    folders.discard(1)  # a process it started may still run and write there
    assert list(tmp_path.iterdir()) == []
    assert _tree(folders.folder(2)) == []


def test_what_hostile_code_changed_is_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("the host's file")
    folders = AttemptFolders(tmp_path / "attempts")
    first = folders.folder(1)
    _used(first)
    (first / "agent" / "tmp" / "scratch").unlink()
    (first / "agent" / "tmp").rmdir()
    (first / "agent" / "tmp").symlink_to(outside)  # TMPDIR replaced by a link to a host folder
    (first / "home" / ".cache").chmod(0o777)  # another mode: kept, it would carry over
    os.setxattr(first / "candidate" / "home", "user.note", b"from attempt 1")
    os.mkfifo(first / "home" / "pipe")
    os.link(first / "agent" / "prompt.md", outside / "alias")  # a second name, which writing the prompt would reach
    folders.discard(1)
    second = folders.folder(2)
    assert _tree(second) == ["agent", "candidate", "candidate/tmp", "home"]
    assert _tree(outside) == ["alias", "keep.txt"] and (outside / "alias").read_text() == "fix it"


def test_spares_of_a_stopped_worker_are_removed_and_a_removed_spare_is_no_loss(tmp_path: Path) -> None:
    stopped, running = AttemptFolders(tmp_path), AttemptFolders(tmp_path)
    _used(stopped.folder(1))
    stopped.discard(1)
    [old] = tmp_path.iterdir()
    os.utime(old, (0, 0))  # idle since long ago
    _used(running.folder(2))
    running.discard(2)
    [fresh] = set(tmp_path.iterdir()) - {old}
    assert remove_stale(tmp_path, 3600) == 1
    assert list(tmp_path.iterdir()) == [fresh]
    assert _tree(stopped.folder(3)) == []  # its spare is gone: a new folder
    assert _tree(running.folder(4)) == SKELETON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"]


def test_a_stopped_workers_spare_serves_the_next_worker_emptied_again(tmp_path: Path) -> None:
    """The worker stopped while it emptied the spare (or after): what the agent left is removed as it is taken."""
    outside = tmp_path / "outside"
    outside.mkdir()
    stopped = tmp_path / "attempts" / ".spare-4194305-abc-0"  # above the kernel's largest pid: its worker stopped
    first = AttemptFolders(tmp_path / "attempts").folder(1)
    _used(first)
    home = (first / "home").stat().st_ino
    first.rename(stopped)  # kept, not yet emptied
    (stopped / "agent" / "tmp" / "scratch").unlink()
    (stopped / "agent" / "tmp").rmdir()
    (stopped / "agent" / "tmp").symlink_to(outside)
    (stopped / "home" / ".cache").chmod(0o777)
    second = AttemptFolders(tmp_path / "attempts").folder(2)
    assert (second / "home").stat().st_ino == home  # the stopped worker's folders: none made
    assert _tree(second) == ["agent", "agent/prompt.md", "candidate", "candidate/home", "candidate/tmp", "home"]
    assert list(outside.iterdir()) == []


def test_a_folder_with_inode_flags_or_grown_large_is_made_anew(tmp_path: Path) -> None:
    folders = AttemptFolders(tmp_path)
    first = folders.folder(1)
    _used(first)
    cache, big = first / "home" / ".cache", first / "candidate" / "tmp"
    handle = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:  # chattr +A: a flag every later attempt would inherit
        flags = struct.unpack("i", fcntl.ioctl(handle, FS_IOC_GETFLAGS, bytes(8))[:4])[0]
        fcntl.ioctl(handle, FS_IOC_SETFLAGS, struct.pack("i", flags | NOATIME) + bytes(4))
    except OSError:
        pytest.skip("this file system keeps no inode flags")
    finally:
        os.close(handle)
    for n in range(400):
        (big / f"{n:04d}-{'x' * 40}").write_text("")
    inodes = {path: path.stat().st_ino for path in (cache, big, first / "home")}
    folders.discard(1)
    second = folders.folder(2)
    assert _tree(second) == [name for name in SKELETON if name not in ("home/.cache", "candidate/tmp")]
    assert (second / "home").stat().st_ino == inodes[first / "home"]


def test_an_attempt_delivered_again_starts_in_a_folder_its_earlier_run_never_touched(tmp_path: Path) -> None:
    """Its folder was handed to its next run as the agent left it: preparing the run, the worker wrote OpenCode's and
    Gemini's configurations through the agent's links, as its own user, and waited for ever on a fifo prompt."""
    host = tmp_path / "host"
    host.mkdir()
    victim = host / "victim.conf"
    victim.write_text("the host's\n")
    first = AttemptFolders(tmp_path / "attempts").start(7)
    _used(first)
    (first / "agent" / "opencode.json").symlink_to(victim)
    (first / "agent" / "gemini-home").symlink_to(host)
    (first / "agent" / "prompt.md").unlink()
    os.mkfifo(first / "agent" / "prompt.md")
    with pytest.raises(OSError):  # at once: a fifo is never waited on
        write_over(first / "agent" / "prompt.md", b"the prompt")
    # the worker stopped during the agent: nothing discarded the folder, and the attempt comes back to this host
    again = AttemptFolders(tmp_path / "attempts").start(7)
    assert again == first and _tree(again) == []
    (again / "agent").mkdir()
    task = AgentTask(tmp_path, again / "agent" / "prompt.md", 1, 1, 60.0, threading.Event())
    OpenCodeAgent(AgentOptions(model="m")).prepare(task, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    GeminiAgent(AgentOptions()).prepare(task, {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9"})
    write_over(task.prompt_file, b"the prompt")
    assert victim.read_text() == "the host's\n" and list(host.iterdir()) == [victim]


def test_an_earlier_unsandboxed_run_keeps_its_mark_through_the_next_start(tmp_path: Path) -> None:
    """What it started may still write into the attempt's folder by its path: the folder must not become a spare."""
    folders = AttemptFolders(tmp_path / "attempts")
    folders.start(7)
    folders.mark_unconfined(7)
    again = AttemptFolders(tmp_path / "attempts")  # the attempt delivered again, to another process
    assert (again.start(7) / UNCONFINED).exists()
    again.discard(7)
    assert not (tmp_path / "attempts" / "7").exists() and again.spares.take(tmp_path / "attempts" / "8") is False


def test_a_verification_finds_its_test_runs_folder_as_the_worker_made_it(tmp_path: Path) -> None:
    """An earlier delivery's test run left a `usercustomize.py` in its tests' HOME, run at the next one's start."""
    folders = AttemptFolders(tmp_path / "attempts")
    first = folders.start(1)
    _used(first)
    folders.discard(1)
    folder = folders.start(2)  # the spare: candidate/home and candidate/tmp as the worker made them
    site = folder / "candidate" / "home" / ".local" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "usercustomize.py").write_text("import os; os._exit(0)\n")
    (folder / "candidate" / "junit.xml").symlink_to(tmp_path)
    assert _tree(AttemptFolders(tmp_path / "attempts").verification(2) / "candidate") == ["home", "tmp"]
    mode = (folder / "candidate").stat().st_mode
    (folder / "candidate").chmod(0o777)  # open to every user of the host, for the next run's reports
    verified = AttemptFolders(tmp_path / "attempts").verification(2)
    assert not (verified / "candidate").exists() or (verified / "candidate").stat().st_mode == mode


def _deep(folder: Path, depth: int = 1500) -> None:
    """Folders nested depth deep, made through handles (their whole path is past PATH_MAX)."""
    handle = os.open(folder, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=handle)
        inner = os.open("a", os.O_RDONLY, dir_fd=handle)
        os.close(handle)
        handle = inner
    os.fchmod(handle, 0o555)  # the deepest read-only too
    os.close(handle)


@pytest.fixture
def removed_after(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, removed by `rm -rf` after the test: pytest's own removal recurses too."""
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path)], check=False)


def test_a_tree_nested_past_pythons_recursion_is_removed_wherever_it_is_left(removed_after: Path) -> None:
    """shutil.rmtree recurses: a test run's folders 1,500 deep raised RecursionError from the verification (an error
    where the verdict was failed) and from the discard of the attempt's folder after its verdict."""
    folders = AttemptFolders(removed_after / "attempts")
    first = folders.start(1)
    _used(first)
    _deep(first / "candidate" / "tmp")
    _deep(first / "agent" / "tmp")
    (first / "candidate" / "rerun").mkdir()
    _deep(first / "candidate" / "rerun")
    assert fresh_folder(first / "candidate" / "rerun").is_dir()
    assert _tree(folders.verification(1) / "candidate") == ["home", "tmp"]
    folders.discard(1)
    assert _tree(folders.start(2)) == SKELETON
