"""SQL plumbing shared by every service: configuration (config), engines and transactions
(engine), per-service migrations (migrations, and `python -m veil.db`), table building blocks
(schema) and UTC time (clock).

One database may hold several services' tables; each service owns its tables and its own
migration history (see veil.db.migrations).
"""

from veil.db.config import DatabaseConfig
from veil.db.engine import Database, create_engine, insert_ignore
from veil.db.migrations import (
    SchemaState,
    migrate,
    open_service_database,
    run_migrations_from_env,
    schema_state,
    version_table,
    wait_for_schema,
)

__all__ = [
    "Database",
    "DatabaseConfig",
    "SchemaState",
    "create_engine",
    "insert_ignore",
    "migrate",
    "open_service_database",
    "run_migrations_from_env",
    "schema_state",
    "version_table",
    "wait_for_schema",
]
