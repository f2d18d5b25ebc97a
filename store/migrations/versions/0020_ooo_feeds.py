"""Reps' out-of-office calendar feeds as last read (ooo_calendar given as a URL).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ooo_feed',
        sa.Column('rep_email', sa.String(320), primary_key=True),
        sa.Column('url_digest', sa.String(64), nullable=False),
        sa.Column('absences', sa.Text(), nullable=False),
        sa.Column('read_at', store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('tried_at', store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('failing_since', store.types.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('ooo_feed')
