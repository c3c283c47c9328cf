"""delivery and the forge: PR and issue numbers on tickets, an attempt's start diff, forge items seen, the outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('pr_url', sa.Text(), nullable=False, server_default=''))
        batch.add_column(sa.Column('pr_number', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('issue_number', sa.Integer(), nullable=True))
    with op.batch_alter_table('attempts') as batch:
        batch.add_column(sa.Column('start_diff', sa.Text(), nullable=False, server_default=''))
    op.create_table(
        'forge_seen',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), sa.ForeignKey('repos.id'), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('tickets.id'), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('repo_id', 'key'),
    )
    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), sa.ForeignKey('repos.id'), nullable=False),
        sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('tickets.id'), nullable=True),
        sa.Column('event', sa.String(length=40), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('tries', sa.Integer(), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_notifications_due', 'notifications', ['sent_at', 'next_at'])


def downgrade() -> None:
    op.drop_index('ix_notifications_due', table_name='notifications')
    op.drop_table('notifications')
    op.drop_table('forge_seen')
    with op.batch_alter_table('attempts') as batch:
        batch.drop_column('start_diff')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('issue_number')
        batch.drop_column('pr_number')
        batch.drop_column('pr_url')
