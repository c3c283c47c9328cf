"""What the calls in flight hold against a ticket's budget, kept where every worker reads it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 20:00:00

The gateway held a call's input and output limit against its ticket's budget while the call was in flight, but in
the memory of one worker's gate: two attempts of one ticket (a fan-out, on two workers) each saw only their own
calls in flight, and each could pass a nearly spent budget by a call. An attempt now records what its calls in
flight hold, and a call is let out only after reading the spend and the holds of every running attempt of its ticket.
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('attempts', sa.Column('held_usd', sa.Float(), nullable=False, server_default='0'))


def downgrade() -> None:
    op.drop_column('attempts', 'held_usd')
