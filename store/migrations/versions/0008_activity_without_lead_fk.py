"""The activity log drops its foreign key to lead.

An activity's lead is set by the batch that stores it, in the same transaction, from the lead rows that batch
has just read or created; leads are never deleted (a merge points one at the other and moves the activities).
On PostgreSQL the key's check is a trigger per row that also locks the lead row: in the 1,000,000-activity
ingest benchmark it cost the server about 5.6 s of 28 s of CPU time, and the run 4 s of 45 s. The score
ledger dropped its key for the same reason (0004).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

FOREIGN_KEY = 'activity_lead_id_fkey'  # PostgreSQL's name for the key 0001 created
# SQLite keeps the key unnamed: the batch copy names reflected keys by this convention so one can be dropped.
NAMING = {'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s'}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('activity', recreate='always', naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint('fk_activity_lead_id_lead', type_='foreignkey')
    else:
        op.drop_constraint(FOREIGN_KEY, 'activity', type_='foreignkey')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('activity', recreate='always') as batch_op:
            batch_op.create_foreign_key('fk_activity_lead_id_lead', 'lead', ['lead_id'], ['id'])
    else:
        op.create_foreign_key(FOREIGN_KEY, 'activity', 'lead', ['lead_id'], ['id'])
