"""The activity index by lead also names the type: (lead_id, type, occurred_at) replaces (lead_id, occurred_at).

Scoring asks for each lead's latest hand-raising activity (a demo request, a trial, a contact-sales form);
with the type in the index that question is answered from the index alone, instead of reading every
activity row of the lead. The index is as wide as the one it replaces, so writes cost the same.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.create_index('ix_activity_lead_type_occurred', ['lead_id', 'type', 'occurred_at'], unique=False)
        batch_op.drop_index('ix_activity_lead_occurred')


def downgrade() -> None:
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.create_index('ix_activity_lead_occurred', ['lead_id', 'occurred_at'], unique=False)
        batch_op.drop_index('ix_activity_lead_type_occurred')
