"""Alembic environment of the routing database (see shared/alembic_env.py)."""
from shared.alembic_env import run

run()
