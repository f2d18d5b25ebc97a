"""Assets match by a key (case-folded, spacing collapsed), stored beside the name on activities and rules. The
key is the application's own (domain.activity.asset_key): a change to it needs a migration that keys again.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

from domain.activity import asset_key

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('activity', sa.Column('asset_key', sa.String(length=500), nullable=True))
    op.add_column('score_rule', sa.Column('asset_key', sa.String(length=500), nullable=True))
    conn = op.get_bind()
    # The key is Python's (SQL's lower() is ASCII-only on SQLite): each distinct name is keyed here, once, and
    # the table takes its keys in one pass.
    names = [row[0] for row in conn.execute(sa.text(
        "SELECT DISTINCT asset FROM activity WHERE asset IS NOT NULL UNION SELECT asset FROM score_rule WHERE asset IS NOT NULL"))]
    keys = sa.table('asset_key_backfill', sa.column('asset', sa.String), sa.column('asset_key', sa.String))
    op.create_table('asset_key_backfill', sa.Column('asset', sa.String(length=500), primary_key=True),
                    sa.Column('asset_key', sa.String(length=500), nullable=True))
    if names:
        op.bulk_insert(keys, [{"asset": name, "asset_key": asset_key(name)} for name in names])
    for table in ('activity', 'score_rule'):
        conn.execute(sa.text(
            f"UPDATE {table} SET asset_key = (SELECT k.asset_key FROM asset_key_backfill k WHERE k.asset = {table}.asset) "
            "WHERE asset IS NOT NULL"))
    op.drop_table('asset_key_backfill')
    op.drop_index('ix_score_rule_match', table_name='score_rule')
    op.create_index('ix_score_rule_match', 'score_rule', ['version_id', 'type', 'asset_key'])


def downgrade() -> None:
    op.drop_index('ix_score_rule_match', table_name='score_rule')
    op.create_index('ix_score_rule_match', 'score_rule', ['version_id', 'type', 'asset'])
    for table in ('score_rule', 'activity'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('asset_key')
