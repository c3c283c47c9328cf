"""A ticket's delivery claim, and a merge entry's refused push

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:30:00

Approving pushes a branch (and opens a pull request) outside any transaction, for seconds; a rejection in that
window reopened the run, and the approval then wrote over it: the diff delivered and the agent at work again. The
approval now claims its ticket for as long as it delivers (`delivering_by`, `delivering_token`, renewed while the
push runs, lapsing at `delivering_until` when the approving process died), and every other decision on the ticket
is refused meanwhile. A merge entry whose landing push the target refused (a protected branch, a declining hook)
says since when (`refused_at`): a worker that stops when idle does not wait for it.
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('delivering_by', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('delivering_token', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('delivering_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('merge_entries') as batch:
        batch.add_column(sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('merge_entries') as batch:
        batch.drop_column('refused_at')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('delivering_until')
        batch.drop_column('delivering_token')
        batch.drop_column('delivering_by')
