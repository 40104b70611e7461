"""comment states: a refused private reply and a removed comment, remembered per comment

Revision ID: d41e7c9a2b10
Revises: 8b2c4d6e1f3a
Create Date: 2026-12-02 09:00:00

Meta can refuse the private reply to one comment (10903 and others); the sender then falls back to
the public reply and must never try the private reply again for that comment. A comment the
citizen removed (intake's ``CitizenCommentRemoved``) gets no public reply any more. Both are
remembered per comment in ``comment_states``.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'd41e7c9a2b10'
down_revision: Union[str, Sequence[str], None] = '8b2c4d6e1f3a'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'comment_states',
        sa.Column('comment_id', sa.String(length=128), nullable=False),
        sa.Column('complaint_id', sa.String(length=36), nullable=True),
        sa.Column('private_reply_closed', sa.String(length=64), nullable=True),
        sa.Column('private_reply_code', sa.Integer(), nullable=True),
        sa.Column('removed_at', sa.String(length=40), nullable=True),
        sa.Column('removed_event_id', sa.String(length=36), nullable=True),
        sa.Column('updated_at', sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint('comment_id'),
    )
    with op.batch_alter_table('comment_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comment_states_complaint_id'), ['complaint_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('comment_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_comment_states_complaint_id'))
    op.drop_table('comment_states')
