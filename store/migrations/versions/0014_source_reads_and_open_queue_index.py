"""Each source's last finished read and last failure; the open handoff-queue rows indexed on their own.

The health check tells a source that has nothing new (its watermark stays put, and that is fine) from one
whose reads fail (expired credentials, a quota spent): `read_at` is when a read last finished, whether or
not it found anything, and `failed_at` with `error` the last read that failed. Sources read before this
revision get theirs with their next run.

The next rooms work through open rows of `handoff_queue` (`done_at` NULL) and the health check counts them,
while done rows accumulate with every handover: a partial index holds the open ones only.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('source_watermark', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_at', store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failed_at', store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=500), nullable=True))
    op.create_index('ix_handoff_queue_open', 'handoff_queue', ['queue', 'created_at'], unique=False,
                    sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_handoff_queue_open', table_name='handoff_queue',
                  sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
    with op.batch_alter_table('source_watermark', schema=None) as batch_op:
        batch_op.drop_column('error')
        batch_op.drop_column('failed_at')
        batch_op.drop_column('read_at')
