"""On SQLite the score ledger is stored in its key's order, lead first (WITHOUT ROWID).

Every read of the ledger is by lead: a chunk of a score run sums its leads' rows, `handoff explain` lists one
lead's, a rebuild replaces a set of leads'. As a rowid table the rows lay in insertion order, with the key a
second tree pointing into them: one random lookup per row read. Stored in key order, a lead's rows are
neighbours. In the scoring benchmark (967,501 ledger rows, 100,000 leads) the twenty chunks' sums took 0.17 s
instead of 0.51 s, and a full rebuild wrote one tree instead of two. PostgreSQL has no such table: nothing
changes there.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('score_ledger', recreate='always', table_kwargs={'sqlite_with_rowid': False}):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('score_ledger', recreate='always', table_kwargs={'sqlite_with_rowid': True}):
            pass
