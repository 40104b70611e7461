"""the feed log: feed_items, feed_outbox, feed_follows (outside readers' feeds)

Revision ID: 5e0f1a2b3c4d
Revises: 
Create Date: 2026-12-02 09:00:00

The gateway's first tables. The consumer tables (checkpoints, processed events, quarantine) come
from the core ``consumer`` branch (shared/core/migration_branches); the gateway keeps no event store.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '5e0f1a2b3c4d'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ('gateway',)
depends_on: Union[str, Sequence[str], None] = 'ff337c0ab861'


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('feed_items',
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('reader_position', sa.BigInteger(), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('recorded_at', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('position'),
    sa.UniqueConstraint('item_id'),
    sa.UniqueConstraint('reader', 'reader_position', name='uq_feed_items_reader_position')
    )
    op.create_table('feed_outbox',
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('position')
    )
    op.create_table('feed_follows',
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('reader', 'complaint_id')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('feed_follows')
    op.drop_table('feed_outbox')
    op.drop_table('feed_items')
