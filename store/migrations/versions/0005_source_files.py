"""Files a file-based source has read to the end, so that an unchanged file is not read again every run.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa

import store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'source_file',
        sa.Column('source', sa.String(length=40), nullable=False),
        sa.Column('path', sa.String(length=1000), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
        sa.Column('lines', sa.Integer(), nullable=False),
        sa.Column('read_at', store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('source', 'path'),
    )


def downgrade() -> None:
    op.drop_table('source_file')
