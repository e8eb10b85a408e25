"""ledger identity, random 53-bit ids, idempotency keys in the ledger (issue #19)

The ledger gets an identity made once, here, which redis records beside the state it keeps
for it (flashsale.sales.binding). Sale and buyer ids become random 53-bit values
(spillway.ids): on PostgreSQL the id columns and the orders' references to them widen to
bigint (SQLite's INTEGER is 64 bits already). Orders keep their Idempotency-Key.

Revision ID: a41c2f0e9b7d
Revises: 5ec0a11d7a4e
Create Date: 2026-12-01 22:00:00

"""
import uuid
from datetime import datetime
from datetime import timezone

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a41c2f0e9b7d'
down_revision = '5ec0a11d7a4e'
branch_labels = None
depends_on = None

WIDENED = (("users", "id"), ("sales", "id"), ("orders", "sale_id"), ("orders", "user_id"))


def upgrade():
    identity = op.create_table(
        'ledger_identity',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('outbox_mark_ms', sa.BigInteger(), nullable=False),
        sa.Column('outbox_mark_seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(identity, [{
        "id": str(uuid.uuid4()),
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "outbox_mark_ms": 0, "outbox_mark_seq": 0}])
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for table, column in WIDENED:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_nullable=False)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table, column in reversed(WIDENED):
            op.alter_column(table, column, type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('idempotency_key')
    op.drop_table('ledger_identity')
