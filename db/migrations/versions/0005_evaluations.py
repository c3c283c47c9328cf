"""evaluations: named task-set runs, their entries, and a ticket's hidden test patch

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('hidden_patch', sa.Text(), nullable=False, server_default=''))
    op.create_table(
        'evaluations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('tasks_file', sa.Text(), nullable=False),
        sa.Column('samples', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'eval_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('evaluation_id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.String(length=200), nullable=False),
        sa.Column('agent', sa.String(length=200), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('sample', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('fail_to_pass', sa.JSON(), nullable=False),
        sa.Column('pass_to_pass', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id']),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('evaluation_id', 'instance_id', 'agent', 'sample'),
    )


def downgrade() -> None:
    op.drop_table('eval_entries')
    op.drop_table('evaluations')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('hidden_patch')
