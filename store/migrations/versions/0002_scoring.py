"""Scoring and qualification: rulebook versions, the ledger, lead states, stage changes, the event outbox.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
import store.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rulebook_version',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    op.create_table('decay_factor',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('age_days', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('factor_micros', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['rulebook_version.id'], ),
    sa.PrimaryKeyConstraint('version_id', 'age_days')
    )
    op.create_table('lead_dirty',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('marked_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('lead_id')
    )
    op.create_table('lead_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('crossing', sa.Integer(), nullable=False),
    sa.Column('occurred_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('published_at', store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id'),
    sa.UniqueConstraint('lead_id', 'kind', 'crossing', name='uq_lead_event_crossing')
    )
    with op.batch_alter_table('lead_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_event_published_at'), ['published_at'], unique=False)

    op.create_table('lead_state',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('peak_score', sa.Integer(), nullable=False),
    sa.Column('fit_points', sa.Integer(), nullable=False),
    sa.Column('fit_grade', sa.String(length=1), nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('stage_changed_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('mql_armed', sa.Boolean(), nullable=False),
    sa.Column('crossings', sa.Integer(), nullable=False),
    sa.Column('cold', sa.Boolean(), nullable=False),
    sa.Column('qualified_at', store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scored_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('lead_id')
    )
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.create_index('ix_lead_state_stage', ['stage'], unique=False)

    op.create_table('score_ledger',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('occurred_epoch', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('lead_id', 'activity_id')
    )
    op.create_table('score_rule',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('action', sa.String(length=600), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('asset', sa.String(length=500), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('cap', sa.Integer(), nullable=True),
    sa.Column('repeat_kind', sa.String(length=10), nullable=False),
    sa.Column('per_day', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['version_id'], ['rulebook_version.id'], ),
    sa.PrimaryKeyConstraint('version_id', 'rule_id')
    )
    with op.batch_alter_table('score_rule', schema=None) as batch_op:
        batch_op.create_index('ix_score_rule_match', ['version_id', 'type', 'asset'], unique=False)

    op.create_table('scoring_state',
    sa.Column('key', sa.String(length=20), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('decayed_at', store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['rulebook_version.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('stage_change',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('from_stage', sa.String(length=20), nullable=True),
    sa.Column('to_stage', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_change_changed_at'), ['changed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stage_change_lead_id'), ['lead_id'], unique=False)

    op.create_table('handoff_queue',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lead_event_id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=20), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_event_id'], ['lead_event.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lead_event_id', 'queue', name='uq_handoff_queue_event')
    )
    with op.batch_alter_table('handoff_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handoff_queue_lead_id'), ['lead_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('handoff_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handoff_queue_lead_id'))

    op.drop_table('handoff_queue')
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_change_lead_id'))
        batch_op.drop_index(batch_op.f('ix_stage_change_changed_at'))

    op.drop_table('stage_change')
    op.drop_table('scoring_state')
    with op.batch_alter_table('score_rule', schema=None) as batch_op:
        batch_op.drop_index('ix_score_rule_match')

    op.drop_table('score_rule')
    op.drop_table('score_ledger')
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_state_stage')

    op.drop_table('lead_state')
    with op.batch_alter_table('lead_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_event_published_at'))

    op.drop_table('lead_event')
    op.drop_table('lead_dirty')
    op.drop_table('decay_factor')
    op.drop_table('rulebook_version')
