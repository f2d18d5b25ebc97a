"""Text that must not be lost has no length limit; the quarantine keeps a payload's bytes and size.

On PostgreSQL the activity's asset and campaign and the lead's details become TEXT: a page URL with its
tracking parameters is routinely longer than 500 characters, and a value longer than its column made its
whole batch fail. VARCHAR to TEXT needs no table rewrite there. SQLite enforces no length, so its declared
types stay (changing one means copying the table). Contact ids may be 200 characters long, as external ids are.

The quarantine gains `raw_bytes` (a payload that is not UTF-8 text, holds a NUL, or was cut at the cap) and
`raw_size` (its size as it came).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

UNBOUNDED = {
    'activity': {'asset': 500, 'asset_key': 500, 'campaign': 500},
    'lead': {'first_name': 200, 'last_name': 200, 'company': 300, 'title': 300, 'industry': 200, 'country': 100,
             'product_interest': 200, 'lead_source_channel': 200},
}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, columns in UNBOUNDED.items():
            for column, length in columns.items():
                op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length), existing_nullable=True)
        op.alter_column('lead_contact', 'contact_id', type_=sa.String(200), existing_type=sa.String(100),
                        existing_nullable=False)
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_bytes', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('raw_size', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_column('raw_size')
        batch_op.drop_column('raw_bytes')
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('lead_contact', 'contact_id', type_=sa.String(100), existing_type=sa.String(200),
                        existing_nullable=False)
        for table, columns in UNBOUNDED.items():
            for column, length in columns.items():
                op.alter_column(table, column, type_=sa.String(length), existing_type=sa.Text(), existing_nullable=True)
