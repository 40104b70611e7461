"""an index on complaints by category, region and filing time

Revision ID: a81c3e5f2d94
Revises: f3c9a7d2e610
Create Date: 2026-12-01 03:20:00

Issue 17: each new complaint is compared with the open complaints of its category and region
filed within the suggestion window (duplicate suggestions, issue 19); without this index that
look-up scanned every complaint routing ever saw.
"""
from typing import Sequence, Union

from alembic import op

revision: str = 'a81c3e5f2d94'
down_revision: Union[str, Sequence[str], None] = 'f3c9a7d2e610'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_complaints_place_filed', 'complaints', ['category', 'region_code', 'filed_at'])


def downgrade() -> None:
    op.drop_index('ix_complaints_place_filed', table_name='complaints')
