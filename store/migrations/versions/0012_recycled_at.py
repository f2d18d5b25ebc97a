"""A lead remembers when a person last recycled it.

A recycled lead counts hand-raises (a demo request, ...) from its recycle on. Until now that moment was read
off `stage_changed_at`, which a disqualification the rules make and undo moves: a lead they returned to
Recycled lost the demo requests it made while wrongly out. `lead_state.recycled_at` keeps the person's
recycle through that round trip.

Leads recycled before this revision are filled in from their stage history: the last change a person's recycle
made (reason `recycled: ...`). A recycled lead with no such change (its stage came from a merged record) keeps
the time it entered Recycled, as before.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recycled_at', store.types.UTCDateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE lead_state SET recycled_at = COALESCE("
        "(SELECT MAX(c.changed_at) FROM stage_change c WHERE c.lead_id = lead_state.lead_id "
        "AND c.to_stage = 'recycled' AND c.reason LIKE 'recycled:%'), "
        "CASE WHEN stage = 'recycled' THEN stage_changed_at END)"
    )


def downgrade() -> None:
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.drop_column('recycled_at')
