"""the core consumer tables: quarantine, consumer_checkpoints, processed_events, handler_failures

Revision ID: ff337c0ab861
Revises:
Create Date: 2026-12-01 10:00:00

The base of the ``consumer`` branch, which every service's history depends on (each service's
initial revision names it in ``depends_on``). The tables are declared in ``shared/core/quarantine.py``
and ``shared/core/consumer.py``.

Until this branch existed each service's initial revision created these tables itself, so a database
made by that older history already has them (and its version table names only the service's
revision). This revision adopts such a database: it creates only the tables that are missing.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'ff337c0ab861'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ('consumer',)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'quarantine' not in existing:
        op.create_table(
            'quarantine',
            sa.Column('item_id', sa.Integer(), autoincrement=True, nullable=False),
            sa.Column('kind', sa.String(length=32), nullable=False),
            sa.Column('source', sa.String(length=64), nullable=True),
            sa.Column('position', sa.BigInteger(), nullable=True),
            sa.Column('reason', sa.Text(), nullable=False),
            sa.Column('payload', sa.Text(), nullable=False),
            sa.Column('quarantined_at', sa.String(length=40), nullable=False),
            sa.Column('state', sa.String(length=16), nullable=False),
            sa.Column('attempts', sa.Integer(), nullable=False),
            sa.Column('replayed_by', sa.String(length=128), nullable=True),
            sa.Column('replayed_at', sa.String(length=40), nullable=True),
            sa.PrimaryKeyConstraint('item_id'),
        )
    if 'consumer_checkpoints' not in existing:
        op.create_table(
            'consumer_checkpoints',
            sa.Column('source', sa.String(length=32), nullable=False),
            sa.Column('position', sa.BigInteger(), nullable=False),
            sa.Column('updated_at', sa.String(length=40), nullable=False),
            sa.PrimaryKeyConstraint('source'),
        )
    if 'processed_events' not in existing:
        op.create_table(
            'processed_events',
            sa.Column('source', sa.String(length=32), nullable=False),
            sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column('event_id', sa.String(length=36), nullable=False),
            sa.Column('outcome', sa.String(length=16), nullable=False),
            sa.PrimaryKeyConstraint('source', 'position'),
        )
    if 'handler_failures' not in existing:
        op.create_table(
            'handler_failures',
            sa.Column('source', sa.String(length=32), nullable=False),
            sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column('failures', sa.Integer(), nullable=False),
            sa.Column('last_error', sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint('source', 'position'),
        )


def downgrade() -> None:
    op.drop_table('handler_failures')
    op.drop_table('processed_events')
    op.drop_table('consumer_checkpoints')
    op.drop_table('quarantine')
