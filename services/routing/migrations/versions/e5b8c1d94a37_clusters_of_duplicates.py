"""duplicates and clusters: compared words, suggestions, links

Revision ID: e5b8c1d94a37
Revises: c4d2a8e61f07
Create Date: 2026-11-30 19:45:00

Issue 19 item 4: the words (and public Facebook post id) each new complaint is compared by, the
suggestions shown to the desk with their grounds and decision, and which complaint is linked to
which primary. New tables only; complaints filed before this revision are simply not compared.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'e5b8c1d94a37'
down_revision: Union[str, Sequence[str], None] = 'c4d2a8e61f07'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'cluster_words',
        sa.Column('complaint_id', sa.String(length=36), nullable=False),
        sa.Column('post_id', sa.String(length=100), nullable=True),
        sa.Column('words', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('complaint_id'),
    )
    with op.batch_alter_table('cluster_words', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_words_post_id'), ['post_id'], unique=False)
    op.create_table(
        'link_suggestions',
        sa.Column('complaint_id', sa.String(length=36), nullable=False),
        sa.Column('primary_id', sa.String(length=36), nullable=False),
        sa.Column('matched_id', sa.String(length=36), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('because', sa.Text(), nullable=False),
        sa.Column('common_words', sa.Text(), nullable=False),
        sa.Column('hours_apart', sa.Float(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('suggested_at', sa.String(length=40), nullable=False),
        sa.Column('decided_by', sa.String(length=200), nullable=True),
        sa.Column('decided_at', sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint('complaint_id', 'primary_id'),
    )
    with op.batch_alter_table('link_suggestions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_suggestions_primary_id'), ['primary_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_suggestions_state'), ['state'], unique=False)
    op.create_table(
        'cluster_links',
        sa.Column('complaint_id', sa.String(length=36), nullable=False),
        sa.Column('primary_id', sa.String(length=36), nullable=False),
        sa.Column('linked_at', sa.String(length=40), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('complaint_id'),
    )
    with op.batch_alter_table('cluster_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_links_primary_id'), ['primary_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cluster_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_links_primary_id'))
    op.drop_table('cluster_links')
    with op.batch_alter_table('link_suggestions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_suggestions_state'))
        batch_op.drop_index(batch_op.f('ix_link_suggestions_primary_id'))
    op.drop_table('link_suggestions')
    with op.batch_alter_table('cluster_words', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_words_post_id'))
    op.drop_table('cluster_words')
