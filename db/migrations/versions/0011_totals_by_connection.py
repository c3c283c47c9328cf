"""On PostgreSQL, /metrics' totals are split by the writing connection, not by attempt id

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 13:00:00

Migration 0009's triggers added each attempt's figures to the shard `id % 16`. A transaction that records twenty
agents' ends (workers/group_writer.py) touched nearly every shard of a total, each locked until it commits, in the
order its attempts came: two worker processes doing so at once waited for each other, and PostgreSQL broke the
deadlock after a second by failing one of them. The 400-slot benchmark (four worker processes) saw about 180 such
deadlocks per 2,000 tickets. A row is now the writing connection's (`pg_backend_pid() % 64`): every figure of a
transaction lands in its own connection's rows, and two connections wait for each other only when their process
ids share a shard (rarely: then a crossing is still possible, and PostgreSQL's retry of it costs a second). A
total is still the sum of its shards (up to 64 per label now), so nothing already counted moves. SQLite has one
writer at a time and keeps its triggers.
"""

from alembic import op

from db.revisions import migration_module

earlier = migration_module("0009_metric_totals.py")

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

CONNECTION_SHARD = "pg_backend_pid() % 64"
BY_ATTEMPT = (f"NEW.attempt_id % {earlier.SHARDS}", f"NEW.id % {earlier.SHARDS}")


def by_connection(body: str) -> str:
    for shard in BY_ATTEMPT:
        body = body.replace(shard, CONNECTION_SHARD)
    assert CONNECTION_SHARD in body and not any(shard in body for shard in BY_ATTEMPT), "0009's shards not found"
    return body


def _replace_functions(by_connection_shard: bool) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name, body in earlier.POSTGRES_FUNCTIONS.items():
        body = by_connection(body) if by_connection_shard else body
        op.execute(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$")


def upgrade() -> None:
    _replace_functions(True)


def downgrade() -> None:
    _replace_functions(False)
