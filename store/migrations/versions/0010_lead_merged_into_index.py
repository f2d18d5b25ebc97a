"""Leads are found by the lead they were merged into.

When a score run qualifies a lead, it first absorbs the state of every lead merged into it (its stage, its
crossings, its open handoff work), following merges of merges. Each chunk of a run asks "which leads were
merged into these?": without an index that is a scan of the lead table per chunk and per step of a merge
chain; with it, a look-up that finds nothing for most chunks.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_lead_merged_into_id', 'lead', ['merged_into_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_lead_merged_into_id', table_name='lead')
