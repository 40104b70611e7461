"""the core event store tables: events and outbox

Revision ID: 73cfae00a11a
Revises:
Create Date: 2026-12-01 10:00:00

The base of the ``event_store`` branch, which the history of every service that emits events
(intake, routing, notification) depends on; reporting emits none and never gets these tables. They
are declared in ``shared/core/eventstore.py``.

Until this branch existed those services' initial revisions created these tables themselves, so a
database made by that older history already has them. This revision adopts such a database: it
creates only the tables that are missing.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '73cfae00a11a'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ('event_store',)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'events' not in existing:
        op.create_table(
            'events',
            sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column('event_id', sa.String(length=36), nullable=False),
            sa.Column('event_type', sa.String(length=64), nullable=False),
            sa.Column('schema_version', sa.Integer(), nullable=False),
            sa.Column('source', sa.String(length=32), nullable=False),
            sa.Column('complaint_id', sa.String(length=36), nullable=False),
            sa.Column('version', sa.Integer(), nullable=False),
            sa.Column('occurred_at', sa.String(length=40), nullable=False),
            sa.Column('data', sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint('position'),
            sa.UniqueConstraint('complaint_id', 'version', name='uq_events_complaint_version'),
            sa.UniqueConstraint('event_id'),
        )
    if 'outbox' not in existing:
        op.create_table(
            'outbox',
            sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
            sa.PrimaryKeyConstraint('position'),
        )


def downgrade() -> None:
    op.drop_table('outbox')
    op.drop_table('events')
