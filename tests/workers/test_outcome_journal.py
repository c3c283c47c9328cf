"""The outcome journal keeps a finished run's outcome for this very attempt only; retrying backs off, then gives up."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.retry import retrying
from workers.journal import AGENT, VERIFY, OutcomeJournal


def test_an_entry_survives_a_new_journal_object_and_answers_only_its_own_attempt(tmp_path: Path) -> None:
    OutcomeJournal(tmp_path).save(7, AGENT, "1:1:1:then", {"diff": "d", "run": 1})
    journal = OutcomeJournal(tmp_path)  # another process on the same host: a worker that took the attempt over
    assert journal.load(7, AGENT, "1:1:1:then") == {"diff": "d", "run": 1}
    assert journal.load(7, AGENT, "1:1:1:another database") is None
    assert journal.load(7, VERIFY, "1:1:1:then") is None
    assert journal.attempt_ids(AGENT) == [7] and journal.attempt_ids(VERIFY) == []
    journal.drop(7)
    assert journal.load(7, AGENT, "1:1:1:then") is None
    assert list(tmp_path.iterdir()) == []


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
