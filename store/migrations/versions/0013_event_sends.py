"""Lead events are confirmed, not assumed, delivered.

A run marked an event published once Prefect's event queue had sent it, but that queue drops an event it cannot
deliver (the server unreachable through all its reconnects) with only a log line, so a marked event could be
missing from Prefect for good. The outbox now keeps when an event was last sent (`sent_at`) and how many times
(`sends`); `published_at` becomes the time a run found the event on the server, and an unconfirmed event is
sent again, under the same id.

Events marked published before this revision are taken as delivered once, at that time.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sends', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE lead_event SET sent_at = published_at, sends = 1 WHERE published_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('lead_event', schema=None) as batch_op:
        batch_op.drop_column('sends')
        batch_op.drop_column('sent_at')
