"""Alembic environment of the intake database (see shared/alembic_env.py)."""
from shared.alembic_env import run

run()
