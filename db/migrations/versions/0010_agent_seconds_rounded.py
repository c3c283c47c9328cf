"""SQLite counts an agent's run time to the millisecond, so a run of exactly a bucket's bound lands in that bucket

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:20:00

Migration 0009's SQLite triggers took an agent's run time from julianday() differences, a float in days: a run of
exactly 30 s could come out as 30.00000001 s and be counted in the 60 s bucket. The difference is now rounded to
the millisecond (timestamps are kept to the microsecond; julianday() is exact to about 0.05 ms). PostgreSQL's
epoch differences are exact and its triggers stay as they are. Totals already counted are left as they are.
"""

from alembic import op

from db.revisions import migration_module

earlier = migration_module("0009_metric_totals.py")

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

AGENT_TRIGGERS = ('metric_agent_insert', 'metric_agent_update')
ROUNDED = f"round({earlier.SQLITE_SECONDS}, 3)"


def _replace(seconds: str) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for name in AGENT_TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
        op.execute(f"CREATE TRIGGER {name} {earlier.SQLITE_TRIGGERS[name].replace(earlier.SQLITE_SECONDS, seconds)}")


def upgrade() -> None:
    _replace(ROUNDED)


def downgrade() -> None:
    _replace(earlier.SQLITE_SECONDS)
