"""Activities by type and lead: scoring looks up a chunk of leads' hand-raises without reading all their
activities.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_activity_type_lead', 'activity', ['type', 'lead_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_activity_type_lead', table_name='activity')
