"""running totals for /metrics, kept by triggers: verdicts, duration histograms, spend

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:30:00

/metrics used to aggregate every verification and attempt on each scrape (a second with 300,000 attempts). The
database now keeps the totals itself, in the transaction that writes the row they come from: a verification
counts when it is inserted, an agent's run time when its attempt's `agent_finished_at` is first set (with the
`started_at` of that moment), spend by every change of an attempt's `cost_usd`. Deleting rows takes nothing off
(Prometheus counters never go backwards). Triggers rather than statements in Fleet's code: no writer can forget
them (the bulk loads of bench/scale.py included) and the worker's hot path sends no statement more.

The histogram buckets are dashboard.DURATION_BOUNDS; a label is the bucket's upper bound as Prometheus prints it.
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BOUNDS = ('1', '5', '15', '30', '60', '120', '300', '600', '1800', '3600')
SHARDS = 16


def bucket(value: str) -> str:
    """The SQL for the label of the first bucket `value` fits (NULL: +Inf, as the query it replaces counted it)."""
    whens = ' '.join(f"WHEN {value} <= {bound} THEN '{bound}'" for bound in BOUNDS)
    return f"CASE {whens} ELSE '+Inf' END"


def add(metric: str, label: str, shard: str, count: str, total: str) -> str:
    """One upsert into the totals (the same text on SQLite and PostgreSQL)."""
    return (
        f"INSERT INTO metric_totals (metric, label, shard, count, total) VALUES ('{metric}', {label}, {shard}, "
        f"{count}, {total}) ON CONFLICT (metric, label, shard) DO UPDATE SET "
        "count = metric_totals.count + excluded.count, total = metric_totals.total + excluded.total"
    )


SQLITE_SECONDS = "(julianday(NEW.agent_finished_at) - julianday(NEW.started_at)) * 86400.0"
SQLITE_TRIGGERS = {
    'metric_verification': f"""
        AFTER INSERT ON verifications
        BEGIN
            {add('verifications', 'NEW.verdict', f'NEW.attempt_id % {SHARDS}', '1', '0')};
            {add('verification_seconds', bucket('NEW.duration'), f'NEW.attempt_id % {SHARDS}', '1',
                 'coalesce(NEW.duration, 0)')};
        END""",
    'metric_attempt_cost_insert': f"""
        AFTER INSERT ON attempts WHEN NEW.cost_usd <> 0
        BEGIN {add('cost_usd', "''", f'NEW.id % {SHARDS}', '0', 'NEW.cost_usd')}; END""",
    'metric_attempt_cost_update': f"""
        AFTER UPDATE OF cost_usd ON attempts WHEN NEW.cost_usd <> OLD.cost_usd
        BEGIN {add('cost_usd', "''", f'NEW.id % {SHARDS}', '0', 'NEW.cost_usd - OLD.cost_usd')}; END""",
    'metric_agent_insert': f"""
        AFTER INSERT ON attempts WHEN NEW.started_at IS NOT NULL AND NEW.agent_finished_at IS NOT NULL
        BEGIN {add('agent_seconds', bucket(SQLITE_SECONDS), f'NEW.id % {SHARDS}', '1', SQLITE_SECONDS)}; END""",
    'metric_agent_update': f"""
        AFTER UPDATE OF agent_finished_at ON attempts
        WHEN OLD.agent_finished_at IS NULL AND NEW.agent_finished_at IS NOT NULL AND NEW.started_at IS NOT NULL
        BEGIN {add('agent_seconds', bucket(SQLITE_SECONDS), f'NEW.id % {SHARDS}', '1', SQLITE_SECONDS)}; END""",
}

POSTGRES_SECONDS = "extract(epoch FROM NEW.agent_finished_at - NEW.started_at)::double precision"
POSTGRES_FUNCTIONS = {
    'fleet_count_verification': f"""
        BEGIN
            {add('verifications', 'NEW.verdict', f'NEW.attempt_id % {SHARDS}', '1', '0')};
            {add('verification_seconds', bucket('NEW.duration'), f'NEW.attempt_id % {SHARDS}', '1',
                 'coalesce(NEW.duration, 0)')};
            RETURN NULL;
        END""",
    'fleet_count_attempt': f"""
        DECLARE
            spent double precision := NEW.cost_usd;
            finished boolean := NEW.started_at IS NOT NULL AND NEW.agent_finished_at IS NOT NULL;
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                spent := NEW.cost_usd - OLD.cost_usd;
                finished := finished AND OLD.agent_finished_at IS NULL;
            END IF;
            IF spent <> 0 THEN
                {add('cost_usd', "''", f'NEW.id % {SHARDS}', '0', 'spent')};
            END IF;
            IF finished THEN
                {add('agent_seconds', bucket(POSTGRES_SECONDS), f'NEW.id % {SHARDS}', '1', POSTGRES_SECONDS)};
            END IF;
            RETURN NULL;
        END""",
}
POSTGRES_TRIGGERS = {
    'metric_verification': "AFTER INSERT ON verifications FOR EACH ROW EXECUTE FUNCTION fleet_count_verification()",
    'metric_attempt_insert': (
        "AFTER INSERT ON attempts FOR EACH ROW WHEN (NEW.cost_usd <> 0 OR NEW.agent_finished_at IS NOT NULL)"
        " EXECUTE FUNCTION fleet_count_attempt()"
    ),
    'metric_attempt_update': (
        "AFTER UPDATE OF cost_usd, agent_finished_at ON attempts FOR EACH ROW"
        " WHEN (NEW.cost_usd <> OLD.cost_usd OR (OLD.agent_finished_at IS NULL AND NEW.agent_finished_at IS NOT NULL))"
        " EXECUTE FUNCTION fleet_count_attempt()"
    ),
}


def backfill(seconds: str) -> list[str]:
    """The totals of the rows already there, in shard 0 (seconds: an attempt's agent run time in this dialect)."""
    agents = seconds.replace('NEW.', '')
    return [
        "INSERT INTO metric_totals (metric, label, shard, count, total)"
        " SELECT 'verifications', verdict, 0, count(*), 0 FROM verifications GROUP BY verdict",
        "INSERT INTO metric_totals (metric, label, shard, count, total)"
        f" SELECT 'verification_seconds', b, 0, count(*), coalesce(sum(d), 0)"
        f" FROM (SELECT {bucket('duration')} AS b, duration AS d FROM verifications) AS v GROUP BY b",
        "INSERT INTO metric_totals (metric, label, shard, count, total)"
        f" SELECT 'agent_seconds', b, 0, count(*), sum(s) FROM (SELECT {bucket(agents)} AS b, {agents} AS s"
        " FROM attempts WHERE started_at IS NOT NULL AND agent_finished_at IS NOT NULL) AS a GROUP BY b",
        "INSERT INTO metric_totals (metric, label, shard, count, total)"
        " SELECT 'cost_usd', '', 0, 0, sum(cost_usd) FROM attempts HAVING sum(cost_usd) <> 0",
    ]


def upgrade() -> None:
    op.create_table(
        'metric_totals',
        sa.Column('metric', sa.String(length=40), nullable=False),
        sa.Column('label', sa.String(length=40), nullable=False),
        sa.Column('shard', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('total', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('metric', 'label', 'shard'),
    )
    # The triggers first: on PostgreSQL creating one locks its table against writes until this migration commits,
    # so a row is either already committed when the backfill reads the table, or counted by the trigger.
    if op.get_bind().dialect.name == 'postgresql':
        for name, body in POSTGRES_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$")
        for name, definition in POSTGRES_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {definition}")
        statements = backfill(POSTGRES_SECONDS)
    else:
        for name, definition in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {definition}")
        statements = backfill(SQLITE_SECONDS)
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name in POSTGRES_FUNCTIONS:
            op.execute(f"DROP FUNCTION {name}() CASCADE")  # and the triggers that call it
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('metric_totals')
