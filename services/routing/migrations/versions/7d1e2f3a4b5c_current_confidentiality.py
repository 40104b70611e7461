"""the complaint's current confidentiality on its state row

Revision ID: 7d1e2f3a4b5c
Revises: 33a2a5a9cac2
Create Date: 2026-11-30 13:40:00

Confidentiality now follows the complaint (a later message reporting an illegal levy, the desk
marking or unmarking it), so the state row carries the current value; existing rows start from the
value filed, which is what every event recorded before this revision implies.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '7d1e2f3a4b5c'
down_revision: Union[str, Sequence[str], None] = '33a2a5a9cac2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('disposition_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confidential', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.execute("UPDATE disposition_states SET confidential = (SELECT complaints.confidential "
               "FROM complaints WHERE complaints.complaint_id = disposition_states.complaint_id)")


def downgrade() -> None:
    with op.batch_alter_table('disposition_states', schema=None) as batch_op:
        batch_op.drop_column('confidential')
