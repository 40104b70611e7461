"""the complaint's current category and region on its state row

Revision ID: f3c9a7d2e610
Revises: e5b8c1d94a37
Create Date: 2026-11-30 20:40:00

Issue 20 item 3: the desk corrects a complaint's category and region (``ComplaintReclassified``),
so the state row carries the current values for the desk's lists and filters; ``complaints`` keeps
the filed ones. Existing rows start from the values filed, which is what every event recorded
before this revision implies (no correction existed).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'f3c9a7d2e610'
down_revision: Union[str, Sequence[str], None] = 'e5b8c1d94a37'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('disposition_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('region_code', sa.String(length=8), nullable=True))
    op.execute("UPDATE disposition_states SET "
               "category = (SELECT complaints.category FROM complaints "
               "WHERE complaints.complaint_id = disposition_states.complaint_id), "
               "region_code = (SELECT complaints.region_code FROM complaints "
               "WHERE complaints.complaint_id = disposition_states.complaint_id)")


def downgrade() -> None:
    with op.batch_alter_table('disposition_states', schema=None) as batch_op:
        batch_op.drop_column('region_code')
        batch_op.drop_column('category')
