"""revocation times, for the per-process revocation cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:10:00
"""
from alembic import op
import sqlalchemy as sa
import kit.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('revoked_access_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_at', kit.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_revoked_access_token_revoked_at'), ['revoked_at'], unique=False)

    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grant_revoked_at'), ['revoked_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grant_revoked_at'))

    with op.batch_alter_table('revoked_access_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revoked_access_token_revoked_at'))
        batch_op.drop_column('revoked_at')
