"""Alembic environment of the notification database (see shared/alembic_env.py)."""
from shared.alembic_env import run

run()
