"""What the calls in flight hold, kept per gate: a new gate of an attempt lets go only of the holds of dead gates

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 02:00:00

An attempt's holds were one figure, which the opening of its gate set to zero: when the attempt's lease lapsed and
another worker took it up while the first was still calling the model, the new gate's opening let go of the first
gate's calls in flight, which then ran unheld and could pass a spent budget. Each gate now holds its own row, which
its records and its close let go of; a gate's opening deletes only the rows of gates whose worker no longer beats and
which held nothing lately. Holds in flight when this revision runs are dropped: a worker is stopped to migrate.
"""

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'budget_holds',
        sa.Column('gate', sa.String(length=64), nullable=False),
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('worker', sa.String(length=200), nullable=False),
        sa.Column('held_usd', sa.Float(), nullable=False),
        sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('gate'),
    )
    op.create_index('ix_budget_holds_attempt_id', 'budget_holds', ['attempt_id'])
    op.drop_column('attempts', 'held_usd')


def downgrade() -> None:
    op.add_column('attempts', sa.Column('held_usd', sa.Float(), nullable=False, server_default='0'))
    op.drop_index('ix_budget_holds_attempt_id', table_name='budget_holds')
    op.drop_table('budget_holds')
