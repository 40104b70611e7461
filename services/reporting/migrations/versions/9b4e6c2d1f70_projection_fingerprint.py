"""the live projection's shape fingerprint

Revision ID: 9b4e6c2d1f70
Revises: 44c96275b9b3
Create Date: 2026-11-30 15:20:00

``projection_state.fingerprint`` records the shape the live generation was built with. Existing
databases get null, which differs from every code's fingerprint: reporting rebuilds its
projection once in the background on its next start (see docs/reporting.md, "Shape changes").
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '9b4e6c2d1f70'
down_revision: Union[str, Sequence[str], None] = '44c96275b9b3'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('projection_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('projection_state', schema=None) as batch_op:
        batch_op.drop_column('fingerprint')
