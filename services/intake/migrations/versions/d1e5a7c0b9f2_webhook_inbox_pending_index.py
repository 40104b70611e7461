"""webhook inbox pending index

Revision ID: d1e5a7c0b9f2
Revises: ba60331c6c06
Create Date: 2026-12-01 13:40:00

Issue 17: the inbox worker asks for pending bodies, oldest first, before every group it
processes. Without an index on ``state`` both databases walked the primary key from the first
body ever stored — every processed body of the retention period (90 days) — to find the few still
pending: 19 ms a call at 100,000 bodies. A partial index holds only the pending ones.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'd1e5a7c0b9f2'
down_revision: Union[str, Sequence[str], None] = 'ba60331c6c06'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index('ix_webhook_inbox_pending', 'webhook_inbox', ['inbox_id'], unique=False,
                    sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_index('ix_webhook_inbox_pending', table_name='webhook_inbox')
