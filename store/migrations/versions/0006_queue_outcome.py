"""A queue row can be closed without being worked: why it was closed, beside when.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('handoff_queue') as batch:
        batch.add_column(sa.Column('outcome', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('detail', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('handoff_queue') as batch:
        batch.drop_column('detail')
        batch.drop_column('outcome')
