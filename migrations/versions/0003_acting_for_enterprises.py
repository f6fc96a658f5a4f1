"""acting for an enterprise: the agent's choice per session, kept with codes and grants

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 06:20:00
"""
from alembic import op
import sqlalchemy as sa
import kit.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sso_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_for', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('acting_chosen', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_done', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_for', sa.String(length=32), nullable=True))
    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_for', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.drop_column('acting_for')
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.drop_column('acting_for')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_column('acting_done')
    with op.batch_alter_table('sso_session', schema=None) as batch_op:
        batch_op.drop_column('acting_chosen')
        batch_op.drop_column('acting_for')
