"""indexes for a large history: listings by status or repository newest first, a ticket's attempts and reviews

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_tickets_status', table_name='tickets')
    op.create_index('ix_tickets_status_id', 'tickets', ['status', 'id'])
    op.create_index('ix_tickets_repo_id', 'tickets', ['repo_id', 'id'])
    op.create_index('ix_attempts_ticket', 'attempts', ['ticket_id'])
    op.create_index('ix_attempts_status_dispatched', 'attempts', ['status', 'dispatched_at'])
    op.drop_index('ix_attempts_status', table_name='attempts')
    op.create_index('ix_reviews_ticket', 'reviews', ['ticket_id'])
    # Covering indexes: the dashboard's sums, counts and histograms read these instead of the wide rows.
    op.create_index('ix_verifications_created', 'verifications', ['created_at', 'verdict', 'duration'])
    op.create_index(
        'ix_attempts_created', 'attempts', ['created_at', 'cost_usd', 'started_at', 'agent_finished_at']
    )
    op.create_index('ix_runs_created', 'runs', ['created_at'])
    op.create_index('ix_verifications_verdict', 'verifications', ['verdict'])


def downgrade() -> None:
    op.drop_index('ix_verifications_verdict', table_name='verifications')
    op.drop_index('ix_runs_created', table_name='runs')
    op.drop_index('ix_attempts_created', table_name='attempts')
    op.drop_index('ix_verifications_created', table_name='verifications')
    op.drop_index('ix_reviews_ticket', table_name='reviews')
    op.create_index('ix_attempts_status', 'attempts', ['status'])
    op.drop_index('ix_attempts_status_dispatched', table_name='attempts')
    op.drop_index('ix_attempts_ticket', table_name='attempts')
    op.drop_index('ix_tickets_repo_id', table_name='tickets')
    op.create_index('ix_tickets_status', 'tickets', ['status'])
    op.drop_index('ix_tickets_status_id', table_name='tickets')
