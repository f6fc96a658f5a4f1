"""resource indicators (RFC 8707): resources a client may ask for, kept with codes and grants

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:00:00
"""
from alembic import op
import sqlalchemy as sa
import kit.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resources', sa.JSON(), server_default='[]', nullable=False))
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=True))
    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.drop_column('resources')
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.drop_column('resources')
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.drop_column('resources')
