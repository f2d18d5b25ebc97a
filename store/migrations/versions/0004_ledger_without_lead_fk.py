"""The score ledger drops its foreign key to lead.

The ledger is derived data: every row is computed from an activity, and activities already reference
their lead by a foreign key; leads are never deleted (a merge only points one at the other). Checking the
key again for each ledger row made a full rescore on PostgreSQL spend ~6 s of ~15 s writing 1,000,000 rows
on foreign-key triggers alone.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

FOREIGN_KEY = 'score_ledger_lead_id_fkey'  # PostgreSQL's name for the key 0002 created


def _ledger(with_foreign_key: bool) -> sa.Table:
    """The ledger as SQLite rebuilds it (SQLite cannot drop or add a constraint in place)."""
    keys = [sa.ForeignKeyConstraint(['lead_id'], ['lead.id'])] if with_foreign_key else []
    return sa.Table(
        'score_ledger', sa.MetaData(),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('activity_id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('rule_id', sa.Integer(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('occurred_epoch', sa.BigInteger(), nullable=False),
        *keys,
        sa.PrimaryKeyConstraint('lead_id', 'activity_id'),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('score_ledger', copy_from=_ledger(False), recreate='always'):
            pass
    else:
        op.drop_constraint(FOREIGN_KEY, 'score_ledger', type_='foreignkey')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('score_ledger', copy_from=_ledger(True), recreate='always'):
            pass
    else:
        op.create_foreign_key(FOREIGN_KEY, 'score_ledger', 'lead', ['lead_id'], ['id'])
