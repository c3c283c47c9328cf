"""Spares: taken by one process, or once it stopped by another, prepared again; deleted by `fleet gc` once their
process is gone or they are idle."""

from __future__ import annotations

import os
from pathlib import Path

from workers.spares import Spares, remove_stale


def _nothing(spare: Path) -> None:
    pass


def _kept(spares: Spares, folder: Path) -> Path:
    """Keep a new folder under folder as a spare; its spare name."""
    before = set(folder.iterdir())
    made = folder / "made"
    made.mkdir()
    assert spares.keep(made)
    (name,) = set(folder.iterdir()) - before
    return name


def test_a_spare_is_taken_once_and_a_full_process_keeps_no_more(tmp_path: Path) -> None:
    spares = Spares(tmp_path, _nothing, limit=1)
    name = _kept(spares, tmp_path)
    assert name.name.startswith(f".spare-{os.getpid()}-") and not (tmp_path / "made").exists()
    (tmp_path / "more").mkdir()
    assert not spares.keep(tmp_path / "more")  # one kept: its limit; the caller deletes its own
    assert (tmp_path / "more").is_dir()
    (tmp_path / "more").rmdir()
    assert spares.take(tmp_path / "7") and (tmp_path / "7").is_dir()
    assert not spares.take(tmp_path / "8")  # none left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7"]


def test_a_spare_removed_by_gc_is_no_loss_to_the_process_that_kept_it(tmp_path: Path) -> None:
    spares = Spares(tmp_path, _nothing)
    name = _kept(spares, tmp_path)
    os.utime(name, (0, 0))
    assert remove_stale(tmp_path, 3600) == 1
    assert not spares.take(tmp_path / "entry")  # gone: the caller makes its file


def test_gc_removes_a_stopped_processes_spares_at_once_and_a_running_ones_only_when_idle(tmp_path: Path) -> None:
    gone = tmp_path / ".spare-4194305-abc-0"  # above the kernel's largest pid: no such process
    gone.mkdir()
    (gone / "home").mkdir()
    mine = _kept(Spares(tmp_path, _nothing), tmp_path)
    other = tmp_path / "12"  # an attempt's folder: never a spare
    other.mkdir()
    halfway = tmp_path / ".removing.spare-1-abc-0"  # an earlier gc stopped while deleting it
    halfway.mkdir()
    assert remove_stale(tmp_path, 3600) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "12"])
    os.utime(mine, (0, 0))
    assert remove_stale(tmp_path, 3600) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["12"]


def test_a_stopped_processes_spares_serve_the_next_process_each_prepared_again(tmp_path: Path) -> None:
    """Deleting them held the stopping worker's exit up; a process that stops while preparing one leaves it as its
    hostile code left it, so each is prepared again as it is taken."""
    stopped = [tmp_path / f".spare-4194305-abc-{n}" for n in range(2)]  # above the kernel's largest pid: stopped
    for spare in stopped:
        spare.mkdir()
        (spare / "left").write_text("what an agent left")
    running = _kept(Spares(tmp_path, _nothing), tmp_path)  # this process runs: its spare is not taken over
    prepared: list[Path] = []

    def empty(spare: Path) -> None:
        prepared.append(spare)
        for entry in spare.iterdir():
            entry.unlink()

    later = Spares(tmp_path, empty)
    assert later.take(tmp_path / "1") and later.take(tmp_path / "2")
    assert not later.take(tmp_path / "3")  # none left but the running process's
    assert sorted(prepared) == [tmp_path / "1", tmp_path / "2"]
    assert not any((tmp_path / "1").iterdir()) and not any((tmp_path / "2").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["1", "2", running.name])


def test_a_left_spare_its_preparation_fails_on_is_deleted(tmp_path: Path) -> None:
    (tmp_path / ".spare-4194305-abc-0").write_text("a file where a folder was kept")

    def refuse(spare: Path) -> None:
        raise NotADirectoryError(spare)

    assert not Spares(tmp_path, refuse).take(tmp_path / "1")  # the caller makes its own
    assert list(tmp_path.iterdir()) == []


def test_an_entry_its_preparation_fails_on_is_deleted_not_kept(tmp_path: Path) -> None:
    def refuse(spare: Path) -> None:
        raise PermissionError(spare)

    spares = Spares(tmp_path, refuse)
    (tmp_path / "entry").write_text("held")
    assert spares.keep(tmp_path / "entry")  # taken: nothing left for the caller to delete
    assert list(tmp_path.iterdir()) == []
    assert not spares.take(tmp_path / "next")
    assert spares.keep(tmp_path / "gone")  # gone already: no loss
