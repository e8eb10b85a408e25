"""Alembic's environment: Spillway's, for any Flask-Migrate app (spillway/alembic_env.py)."""

from spillway.alembic_env import run_migrations

run_migrations()
