"""routing's events carry the lifecycle

Revision ID: 8b2c4d6e1f3a
Revises: 5c964afa9ec5
Create Date: 2026-11-30 15:20:00

Notification now reads each complaint's status, agencies and their names and its current
confidentiality from the lifecycle routing puts on its events (v2), so:

* the names it gathered per complaint (``complaints.agency_names``) go: they travel in the events;
* routing's events it recorded before (v1, no lifecycle) must be recorded again with it. Routing's
  log gives every event lifted to v2, so the routing checkpoint starts over: the catch-up handles
  the whole log again, which fills in the lifecycles and — as any replay — records no message
  twice (message ids are stable and already-planned events are not planned again). Until then a
  complaint's history stops at its first event without a lifecycle (``complaint_history``).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '8b2c4d6e1f3a'
down_revision: Union[str, Sequence[str], None] = '5c964afa9ec5'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.drop_column('agency_names')
    op.execute("DELETE FROM processed_events WHERE source = 'routing'")
    op.execute("DELETE FROM consumer_checkpoints WHERE source = 'routing'")


def downgrade() -> None:
    # The names come back empty; the older code gathers them again from later events.
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agency_names', sa.Text(), nullable=False,
                                      server_default='{}'))
