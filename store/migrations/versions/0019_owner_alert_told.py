"""Owner alerts remember whom the last engagement alert told, so that a lead's new owner is not kept quiet by the
alert its former owner had.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before keep NULL: their quiet period holds for whoever owns the lead, as it did
    with op.batch_alter_table('owner_alert_lead') as batch:
        batch.add_column(sa.Column('engaged_alert_to', sa.String(320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('owner_alert_lead') as batch:
        batch.drop_column('engaged_alert_to')
