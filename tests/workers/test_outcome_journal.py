"""The outcome journal keeps a finished run's outcome for this very attempt only; retrying backs off, then gives up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from system.retry import retrying
from workers.journal import AGENT, VERIFY, OutcomeJournal
from workers.spares import remove_stale


def test_an_entry_survives_a_new_journal_object_and_answers_only_its_own_attempt(tmp_path: Path) -> None:
    OutcomeJournal(tmp_path).save(7, AGENT, "1:1:1:then", {"diff": "d", "run": 1})
    journal = OutcomeJournal(tmp_path)  # another process on the same host: a worker that took the attempt over
    assert journal.load(7, AGENT, "1:1:1:then") == {"diff": "d", "run": 1}
    assert journal.load(7, AGENT, "1:1:1:another database") is None
    assert journal.load(7, VERIFY, "1:1:1:then") is None
    assert journal.attempt_ids(AGENT) == [7] and journal.attempt_ids(VERIFY) == []
    journal.drop(7)
    assert journal.load(7, AGENT, "1:1:1:then") is None
    assert journal.attempt_ids(AGENT) == []
    assert [p.name.startswith(".spare-") for p in tmp_path.iterdir()] == [True]  # kept to write the next entry over


def test_a_dropped_entry_is_the_file_the_next_entry_is_written_into(tmp_path: Path) -> None:
    journal, root = OutcomeJournal(tmp_path / "journal"), tmp_path / "journal"
    journal.save(1, AGENT, "f1", {"diff": "first"})
    os.link(root / "1.agent.json", tmp_path / "watch")  # a second name for the file the first entry is in
    journal.drop(1)
    journal.save(2, VERIFY, "f2", {"verdict": "pass"})
    assert (tmp_path / "watch").stat().st_nlink == 2  # the same file holds the second entry: none was made
    assert (tmp_path / "watch").read_bytes() == (root / "2.verify.json").read_bytes()
    assert journal.load(2, VERIFY, "f2") == {"verdict": "pass"}
    assert [p.name for p in root.iterdir()] == ["2.verify.json"]


def test_spares_of_a_stopped_worker_are_removed_and_a_removed_spare_is_no_loss(tmp_path: Path) -> None:
    stopped, running = OutcomeJournal(tmp_path), OutcomeJournal(tmp_path)
    for journal, attempt_id in ((stopped, 1), (running, 2)):
        journal.save(attempt_id, AGENT, "f", {"run": attempt_id})
        journal.drop(attempt_id)
    spares = sorted(tmp_path.iterdir(), key=lambda p: p.stat().st_ino)
    assert len(spares) == 2 and all(p.name.startswith(".spare-") for p in spares)
    os.utime(spares[0], (time.time() - 7200, time.time() - 7200))
    gc = OutcomeJournal(tmp_path, spares=0)
    assert remove_stale(tmp_path, 3600) == 1
    assert list(tmp_path.iterdir()) == [spares[1]]
    for journal, attempt_id in ((stopped, 3), (running, 4)):  # whichever spare is gone, a save still keeps its entry
        journal.save(attempt_id, AGENT, "f", {"run": attempt_id})
        assert OutcomeJournal(tmp_path).load(attempt_id, AGENT, "f") == {"run": attempt_id}
    gc.drop(3)  # `fleet gc` stops soon: what it drops is deleted, not kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4.agent.json"]


def test_an_entry_replaced_by_a_link_is_not_kept_and_its_target_not_emptied(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's file\n")
    journal = OutcomeJournal(tmp_path / "journal")
    journal.save(5, AGENT, "f", {"run": 1})
    entry = tmp_path / "journal" / "5.agent.json"
    entry.unlink()
    entry.symlink_to(outside)
    journal.drop(5)
    assert outside.read_text() == "the host's file\n"
    assert list((tmp_path / "journal").iterdir()) == []


def test_a_torn_or_foreign_file_is_no_outcome(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path)
    tmp_path.joinpath("8.agent.json").write_text('{"fingerprint": "x", "outc')
    tmp_path.joinpath("notes.txt").write_text("hello")
    assert journal.load(8, AGENT, "x") is None
    assert journal.attempt_ids(AGENT) == [8]  # named as an entry (notes.txt is not), read as no outcome


class Away(Exception):
    """A database that does not answer."""


def test_retrying_backs_off_through_transient_errors_and_returns(tmp_path: Path) -> None:
    calls, pauses = [], []

    def write() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise Away
        return "stored"

    result = retrying(write, lambda e: isinstance(e, Away), 60, pause=lambda n: 2.0**n, sleep=pauses.append)
    assert (result, len(calls), pauses) == ("stored", 4, [1.0, 2.0, 4.0])


def test_retrying_gives_up_at_its_deadline_and_never_retries_a_real_bug() -> None:
    with pytest.raises(Away):
        retrying(lambda: (_ for _ in ()).throw(Away()), lambda e: isinstance(e, Away), 0.0, sleep=lambda _: None)
    calls = []

    def bug() -> None:
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        retrying(bug, lambda e: isinstance(e, Away), 60, sleep=lambda _: None)
    assert calls == [1]


class Syncs:
    """What the journal fsync'd: each descriptor's file, as (device, inode), in order."""

    def __init__(self) -> None:
        self.files: list[tuple[int, int]] = []

    def __call__(self, fd: int) -> None:
        info = os.fstat(fd)
        self.files.append((info.st_dev, info.st_ino))
        os.fsync(fd)


def _file(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def test_an_entry_is_made_durable_only_once_the_database_did_not_answer_its_outcome(tmp_path: Path) -> None:
    syncs = Syncs()
    journal = OutcomeJournal(tmp_path, sync=syncs)
    journal.save(7, AGENT, "f", {"diff": "d"})
    journal.save(7, VERIFY, "f", {"verdict": "pass"})
    journal.save(8, AGENT, "g", {"diff": "other"})
    away = journal.kept_while(7, lambda exc: isinstance(exc, ConnectionError))
    assert retrying(lambda: "stored", away, 1.0) == "stored" and syncs.files == []  # answered at once: no fsync

    failures = iter([ConnectionError("the database is away"), None])

    def write() -> str:
        if failure := next(failures):
            raise failure
        return "stored"

    assert retrying(write, away, 5.0, pause=lambda n: 0.0) == "stored"
    entries = [_file(tmp_path / "7.agent.json"), _file(tmp_path / "7.verify.json")]
    assert syncs.files == [*entries, _file(tmp_path)]  # the attempt's entries, then their names: no other's
    with pytest.raises(ValueError):  # not the database being away: nothing is made durable, the error goes on
        retrying(lambda: int("x"), away, 1.0)
    assert len(syncs.files) == 3
