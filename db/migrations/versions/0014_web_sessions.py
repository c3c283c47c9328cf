"""Web sessions on the server: logging out ends the session, not only the browser's copy of its cookie

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 09:00:00

A session cookie was signed and checked without the database holding it, so logging out only asked the browser to
drop it: a copy of the cookie (a shared machine, a proxy's log) kept working for the rest of its 12 hours. Each login
is now a row holding the sha256 of the cookie's secret; logging out deletes that row alone. Cookies issued before
this revision are no longer valid: everybody logs in once more.
"""

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_web_sessions_created_at', 'web_sessions', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_web_sessions_created_at', table_name='web_sessions')
    op.drop_table('web_sessions')
