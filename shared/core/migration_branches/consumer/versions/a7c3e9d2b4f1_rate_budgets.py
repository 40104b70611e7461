"""the shared rate budgets: rate_budgets (one token bucket per key, shared by a service's replicas)

Revision ID: a7c3e9d2b4f1
Revises: ff337c0ab861
Create Date: 2026-11-30 17:30:00

Declared in ``shared/core/shared_budget.py``. Every service gets it (the ``consumer`` branch):
the notification sender's send budget per Page and API, and the public endpoints' per-client
limits, are counted here so that every replica of a service spends one budget.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'a7c3e9d2b4f1'
down_revision: Union[str, Sequence[str], None] = 'ff337c0ab861'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if 'rate_budgets' in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        'rate_budgets',
        sa.Column('budget_key', sa.String(length=200), nullable=False),
        sa.Column('tat', sa.Float(precision=53), nullable=False),
        sa.Column('blocked_until', sa.Float(precision=53), nullable=False),
        sa.Column('granted_at', sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint('budget_key'),
    )


def downgrade() -> None:
    op.drop_table('rate_budgets')
