"""merge queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'merge_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('area', sa.JSON(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=True),
        sa.Column('parent_sha', sa.String(length=64), nullable=True),
        sa.Column('build_sha', sa.String(length=64), nullable=True),
        sa.Column('stack', sa.JSON(), nullable=False),
        sa.Column('builds', sa.Integer(), nullable=False),
        sa.Column('lease_token', sa.String(length=64), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('failures', sa.JSON(), nullable=False),
        sa.Column('conflict', sa.JSON(), nullable=False),
        sa.Column('suspects', sa.JSON(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('merged_sha', sa.String(length=64), nullable=True),
        sa.Column('enqueued_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id']),
        sa.ForeignKeyConstraint(['repo_id'], ['repos.id']),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_merge_entries_repo_status', 'merge_entries', ['repo_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_merge_entries_repo_status', table_name='merge_entries')
    op.drop_table('merge_entries')
