"""The gateway's records on SQLite and PostgreSQL alike: numbered calls, the attempt's totals in step, unpriced
calls counted, and the ticket's spend including an attempt still running."""

from __future__ import annotations

import pytest

from db import queries
from db.engine import Database
from db.migrate import upgrade

CALL = dict(protocol="openai-chat", model="gpt-4o", streamed=True, status=200, duration=0.5, request="", response="")


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def test_calls_are_numbered_and_summed_into_the_attempt_and_the_tickets_spend(db: Database) -> None:
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/x", test_cmd="t")
        ticket = queries.add_ticket(
            s, ["llm"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="a" * 40, agent="llm", attempt_budget=1
        )
        attempt_id, ticket_id = queries.add_attempt(s, ticket.runs[0], "prompt").id, ticket.id
    for tokens, cost in ((1000, 0.25), (500, None), (0, 0.0)):
        with db.session() as s:
            queries.add_model_call(
                s, attempt_id, input_tokens=tokens, output_tokens=tokens // 10, cached_tokens=0, cost_usd=cost, **CALL
            )
    with db.session() as s:
        assert [c.seq for c in queries.model_calls(s, attempt_id)] == [1, 2, 3]
        assert queries.metered(s, attempt_id) == queries.Metered(3, 1500, 150, 0.25, 1)
        attempt = queries.get_attempt(s, attempt_id)
        assert (attempt.tokens_in, attempt.tokens_out, attempt.cost_usd, attempt.unpriced_calls) == (1500, 150, 0.25, 1)
        assert queries.spend(s, ticket_id=ticket_id) == pytest.approx(0.25)  # the attempt has not finished
