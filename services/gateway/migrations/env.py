"""Alembic environment of the gateway's tables; run through `python -m veil.db migrate --service gateway`."""

from veil.db.migrations import run_migrations_from_env

run_migrations_from_env()
