"""Routing, the SLA and notifications: each lead's assignments (the current one, the rule, the path, when the CRM
took the owner), routing's state between runs (round robins and leads given per rep and day, versioned), one SLA
timer per assignment, and an outbox of notifications to people.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'assignment',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('lead.id'), nullable=False),
        sa.Column('owner_email', sa.String(320), nullable=True),
        sa.Column('owner_crm_id', sa.String(18), nullable=True),
        sa.Column('owner_name', sa.Text(), nullable=True),
        sa.Column('queue', sa.String(120), nullable=True),
        sa.Column('team', sa.String(80), nullable=True),
        sa.Column('rule', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('notify_only', sa.Boolean(), nullable=False),
        _utc('decided_at', nullable=False),
        _utc('written_at'),
        _utc('superseded_at'),
        sa.Column('run_id', sa.String(64), nullable=True),
    )
    op.create_index('ix_assignment_current', 'assignment', ['lead_id'], unique=True,
                    sqlite_where=sa.text('superseded_at IS NULL'), postgresql_where=sa.text('superseded_at IS NULL'))
    op.create_index('ix_assignment_unwritten', 'assignment', ['lead_id'],
                    sqlite_where=sa.text('written_at IS NULL AND superseded_at IS NULL'),
                    postgresql_where=sa.text('written_at IS NULL AND superseded_at IS NULL'))
    op.create_index('ix_assignment_owner_decided', 'assignment', ['owner_email', 'decided_at'])
    op.create_index('ix_assignment_lead', 'assignment', ['lead_id', 'id'])
    op.create_table(
        'routing_state',
        sa.Column('key', sa.String(20), primary_key=True),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        _utc('updated_at', nullable=False),
    )
    op.create_table(
        'sla_timer',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('lead.id'), nullable=False),
        sa.Column('assignment_id', sa.Integer(), nullable=False, unique=True),
        sa.Column('owner_email', sa.String(320), nullable=True),
        sa.Column('team', sa.String(80), nullable=True),
        sa.Column('policy', sa.Text(), nullable=False),
        sa.Column('state', sa.String(20), nullable=False),
        _utc('opened_at', nullable=False),
        _utc('due_at', nullable=False),
        _utc('next_step_at', nullable=False),
        _utc('first_contact_at'),
        _utc('closed_at'),
        sa.Column('timer', sa.Text(), nullable=False),
    )
    op.create_index('ix_sla_timer_lead_id', 'sla_timer', ['lead_id'])
    op.create_index('ix_sla_timer_running', 'sla_timer', ['next_step_at'],
                    sqlite_where=sa.text('closed_at IS NULL'), postgresql_where=sa.text('closed_at IS NULL'))
    op.create_table(
        'notification',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('key', sa.String(200), nullable=False, unique=True),
        sa.Column('kind', sa.String(40), nullable=False),
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('lead.id'), nullable=True),
        sa.Column('assignment_id', sa.Integer(), nullable=True),
        sa.Column('recipient', sa.String(320), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        _utc('created_at', nullable=False),
        _utc('next_attempt_at'),
        _utc('sending_at'),
        _utc('sent_at'),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('error', sa.Text(), nullable=True),
        _utc('given_up_at'),
        _utc('unconfirmed_at'),
    )
    op.create_index('ix_notification_lead_id', 'notification', ['lead_id'])
    op.create_index('ix_notification_assignment', 'notification', ['assignment_id'])
    op.create_index('ix_notification_unsent', 'notification', ['created_at'],
                    sqlite_where=sa.text('sent_at IS NULL AND given_up_at IS NULL'),
                    postgresql_where=sa.text('sent_at IS NULL AND given_up_at IS NULL'))


def downgrade() -> None:
    for table in ('notification', 'sla_timer', 'routing_state', 'assignment'):
        op.drop_table(table)
