"""Alembic environment of the unlearner's tables; run through `python -m veil.db migrate --service unlearner`."""

from veil.db.migrations import run_migrations_from_env

run_migrations_from_env()
