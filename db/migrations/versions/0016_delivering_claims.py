"""A ticket's delivery claim, and a merge entry's refused push

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:30:00

Approving pushes a branch (and opens a pull request) outside any transaction, for seconds; a rejection in that
window reopened the run, and the approval then wrote over it: the diff delivered and the agent at work again. The
approval now claims its ticket for as long as it delivers (`delivering_by`, `delivering_token`, renewed while the
push runs, lapsing at `delivering_until` when the approving process died), and every other decision on the ticket
is refused meanwhile. A merge entry whose landing push the target refused (a protected branch, a declining hook)
says since when (`refused_at`): a worker that stops when idle does not wait for it. A build that Fleet itself failed
to verify (a worker's mirror or checkout out of order) is no verdict: `build_errors` counts those of the current build,
which is sent again until it reaches the bound.
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('delivering_by', sa.String(length=200), nullable=True))
    op.add_column('tickets', sa.Column('delivering_token', sa.String(length=64), nullable=True))
    op.add_column('tickets', sa.Column('delivering_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('merge_entries', sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('merge_entries', sa.Column('build_errors', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('merge_entries', 'build_errors')
    op.drop_column('merge_entries', 'refused_at')
    op.drop_column('tickets', 'delivering_until')
    op.drop_column('tickets', 'delivering_token')
    op.drop_column('tickets', 'delivering_by')
