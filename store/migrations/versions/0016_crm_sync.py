"""The two-way sync with the CRM: each lead's CRM record (link, what sales did, what Handoff wrote), the CRM's
users, accounts, logged activities and opportunities, a watermark per kind of record pulled, and a lease for work
only one run may do at a time.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'crm_record',
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('lead.id'), primary_key=True),
        sa.Column('object', sa.String(20), nullable=False),
        sa.Column('crm_id', sa.String(18), nullable=True),
        sa.Column('owner_id', sa.String(18), nullable=True),
        sa.Column('status', sa.String(80), nullable=True),
        sa.Column('converted', sa.Boolean(), nullable=False, server_default=sa.text('false')),
        sa.Column('contact_id', sa.String(18), nullable=True),
        sa.Column('opportunity_id', sa.String(18), nullable=True),
        sa.Column('account_id', sa.String(18), nullable=True),
        sa.Column('recycle_reason', sa.Text(), nullable=True),
        sa.Column('product_line', sa.String(80), nullable=True),
        _utc('modified_at'),
        sa.Column('modified_by', sa.String(18), nullable=True),
        _utc('pulled_at'),
        sa.Column('pushed', sa.Text(), nullable=True),
        _utc('pushed_at'),
        sa.Column('sending', sa.Text(), nullable=True),
        _utc('sending_at'),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('error_code', sa.String(60), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        _utc('failed_at'),
        _utc('dead_at'),
        _utc('released_at'),
        sa.Column('released_reason', sa.Text(), nullable=True),
    )
    op.create_index('ix_crm_record_crm_id', 'crm_record', ['crm_id'])
    op.create_index('ix_crm_record_opportunity_id', 'crm_record', ['opportunity_id'])
    op.create_index('ix_crm_record_dead_at', 'crm_record', ['dead_at'])
    op.create_table(
        'crm_user',
        sa.Column('crm_id', sa.String(18), primary_key=True),
        sa.Column('email', sa.String(320), nullable=True),
        sa.Column('name', sa.Text(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('manager_id', sa.String(18), nullable=True),
        sa.Column('timezone', sa.String(60), nullable=True),
        _utc('modified_at'),
    )
    op.create_index('ix_crm_user_email', 'crm_user', ['email'])
    op.create_table(
        'crm_account',
        sa.Column('crm_id', sa.String(18), primary_key=True),
        sa.Column('name', sa.Text(), nullable=True),
        sa.Column('name_key', sa.String(300), nullable=True),
        sa.Column('domain', sa.String(255), nullable=True),
        sa.Column('owner_id', sa.String(18), nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        _utc('modified_at', nullable=False),
    )
    op.create_index('ix_crm_account_name_key', 'crm_account', ['name_key'])
    op.create_index('ix_crm_account_domain', 'crm_account', ['domain'])
    op.create_table(
        'crm_activity',
        sa.Column('crm_id', sa.String(18), primary_key=True),
        sa.Column('who_id', sa.String(18), nullable=True),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(20), nullable=False),
        sa.Column('owner_id', sa.String(18), nullable=True),
        _utc('occurred_at', nullable=False),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        _utc('modified_at', nullable=False),
    )
    op.create_index('ix_crm_activity_who_id', 'crm_activity', ['who_id'])
    op.create_index('ix_crm_activity_lead_occurred', 'crm_activity', ['lead_id', 'occurred_at'])
    op.create_table(
        'crm_opportunity',
        sa.Column('crm_id', sa.String(18), primary_key=True),
        sa.Column('account_id', sa.String(18), nullable=True),
        sa.Column('stage_name', sa.String(80), nullable=True),
        sa.Column('closed', sa.Boolean(), nullable=False),
        sa.Column('won', sa.Boolean(), nullable=False),
        sa.Column('amount', sa.Float(), nullable=True),
        sa.Column('owner_id', sa.String(18), nullable=True),
        sa.Column('close_date', sa.String(10), nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        _utc('modified_at', nullable=False),
    )
    op.create_table(
        'crm_watermark',
        sa.Column('kind', sa.String(20), primary_key=True),
        _utc('watermark'),
        _utc('updated_at', nullable=False),
        sa.Column('run_id', sa.String(64), nullable=True),
    )
    op.create_table(
        'run_lease',
        sa.Column('name', sa.String(40), primary_key=True),
        sa.Column('holder', sa.String(64), nullable=False),
        _utc('expires_at', nullable=False),
    )


def downgrade() -> None:
    for table in ('run_lease', 'crm_watermark', 'crm_opportunity', 'crm_activity', 'crm_account', 'crm_user', 'crm_record'):
        op.drop_table(table)
