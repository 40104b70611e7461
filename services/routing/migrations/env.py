"""Alembic environment of the routing database (see shared/core/alembic_env.py)."""
from shared.core.alembic_env import run

run()
