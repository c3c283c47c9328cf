"""model calls metered by the gateway, and what the agent reported beside them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_calls',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('protocol', sa.String(length=40), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('streamed', sa.Boolean(), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('input_tokens', sa.Integer(), nullable=False),
        sa.Column('output_tokens', sa.Integer(), nullable=False),
        sa.Column('cached_tokens', sa.Integer(), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=True),
        sa.Column('duration', sa.Float(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('request', sa.Text(), nullable=False),
        sa.Column('response', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('attempt_id', 'seq'),
    )
    op.create_index('ix_model_calls_attempt_id', 'model_calls', ['attempt_id'])
    with op.batch_alter_table('attempts') as batch:
        batch.add_column(sa.Column('unpriced_calls', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('reported_tokens_in', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('reported_tokens_out', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('reported_cost_usd', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts') as batch:
        batch.drop_column('reported_cost_usd')
        batch.drop_column('reported_tokens_out')
        batch.drop_column('reported_tokens_in')
        batch.drop_column('unpriced_calls')
    op.drop_index('ix_model_calls_attempt_id', table_name='model_calls')
    op.drop_table('model_calls')
