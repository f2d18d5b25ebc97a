"""Owner alerts: the cursor through the activity log, and what the alerts remember of each owned lead (the last
engagement alert, the newest activity looked at, whether the score stood at the readiness level).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'alert_cursor',
        sa.Column('name', sa.String(40), primary_key=True),
        sa.Column('through_id', sa.BigInteger(), nullable=False),
        _utc('updated_at', nullable=False),
        sa.Column('run_id', sa.String(64), nullable=True),
    )
    op.create_table(
        'owner_alert_lead',
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('lead.id'), primary_key=True),
        _utc('engaged_alert_at'),
        sa.Column('looked_through', sa.BigInteger(), nullable=False),
        sa.Column('ready', sa.Boolean(), nullable=False),
        sa.Column('recheck', sa.Boolean(), nullable=False),
        _utc('looked_at', nullable=False),
    )
    op.create_index('ix_owner_alert_lead_recheck', 'owner_alert_lead', ['lead_id'],
                    sqlite_where=sa.text('recheck'), postgresql_where=sa.text('recheck'))


def downgrade() -> None:
    op.drop_index('ix_owner_alert_lead_recheck', table_name='owner_alert_lead')
    op.drop_table('owner_alert_lead')
    op.drop_table('alert_cursor')
