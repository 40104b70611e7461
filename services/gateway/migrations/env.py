"""Alembic environment of the gateway database (see shared/core/alembic_env.py)."""
from shared.core.alembic_env import run

run()
