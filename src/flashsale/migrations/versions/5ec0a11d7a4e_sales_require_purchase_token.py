"""sales: requires_purchase_token (the anti-bot purchase token, issue #6)

Revision ID: 5ec0a11d7a4e
Revises: b6c7accdadc4
Create Date: 2026-11-27 10:30:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '5ec0a11d7a4e'
down_revision = 'b6c7accdadc4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requires_purchase_token', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_column('requires_purchase_token')
