"""external_ref unique per caller system

Revision ID: ba60331c6c06
Revises: 447d299f1696
Create Date: 2026-11-30 16:22:43.417387

Issue 16 ("intake.file_complaint trusts its caller"): a complaint records the outside system that
filed it over RPC (``caller_system``, named by the gateway; "" for the platform's own doors), and
``external_ref`` is unique per caller system instead of globally — one system's reference never
answers with, or swallows, another system's complaint. Existing rows were all filed by internal
callers ("").

The old constraint is unnamed: PostgreSQL calls it ``complaints_external_ref_key``, SQLite gives
it no name at all. It is found by its column, and on SQLite (where the table is rebuilt) named by a
naming convention so the batch can drop it.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'ba60331c6c06'
down_revision: Union[str, Sequence[str], None] = '447d299f1696'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Only used to name SQLite's unnamed constraint inside the batch (the table is rebuilt anyway).
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _unique_on(columns: list[str]) -> str | None:
    """The name of the complaints table's unique constraint on exactly ``columns`` (None: unnamed)."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("complaints"):
        if constraint["column_names"] == columns:
            return constraint["name"] or f"uq_complaints_{columns[0]}"
    raise RuntimeError(f"complaints has no unique constraint on {columns}")


def upgrade() -> None:
    old = _unique_on(["external_ref"])
    with op.batch_alter_table('complaints', schema=None, naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.add_column(sa.Column('caller_system', sa.String(length=64), server_default='', nullable=False))
        batch_op.drop_constraint(old, type_='unique')
        batch_op.create_unique_constraint('uq_complaints_caller_external_ref', ['caller_system', 'external_ref'])


def downgrade() -> None:
    # Back to one global reference space: fails (unique violation) if two systems used the same ref.
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.drop_constraint('uq_complaints_caller_external_ref', type_='unique')
        batch_op.drop_column('caller_system')
        batch_op.create_unique_constraint('complaints_external_ref_key', ['external_ref'])
