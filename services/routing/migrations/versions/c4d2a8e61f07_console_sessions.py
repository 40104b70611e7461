"""the console's signed-in sessions, kept server-side so signing out ends them

Revision ID: c4d2a8e61f07
Revises: 9c72c19e1166
Create Date: 2026-11-30 16:55:00

A new table; no existing row changes. Sessions opened before this revision lived in signed
cookies only: they carry no session id, so their holders simply sign in again.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'c4d2a8e61f07'
down_revision: Union[str, Sequence[str], None] = '9c72c19e1166'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('session_hash', sa.String(length=64), nullable=False),
        sa.Column('agency_code', sa.String(length=64), nullable=False),
        sa.Column('officer', sa.String(length=400), nullable=False),
        sa.Column('issued_at', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('session_hash'),
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_expires_at'))
    op.drop_table('console_sessions')
