"""Per-service schema migrations: each service owns its tables (names carry its prefix, e.g. `gw_`
for the gateway) and its own Alembic history, recorded in its own version table
(`alembic_version_<service>`), so migrating one service never touches another's.

A service's migrations are a package beside the service (`migrations/`: an Alembic `env.py` that
calls `run_migrations_from_env`, and hand-written `versions/`), registered in MIGRATION_PACKAGES.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veil.db.config import DatabaseConfig
from veil.db.engine import Database, for_writes, translate_errors
from veil.errors import ConfigError, FailedPrecondition, InvalidArgument, Unavailable

if TYPE_CHECKING:
    from alembic.config import Config

# service -> the package holding its Alembic scripts. Named here, not found by walking a
# directory, so the migration Job (`python -m veil.db migrate --service NAME`) finds them wherever
# the code is installed; a service that gets tables adds its line.
MIGRATION_PACKAGES = {
    "gateway": "services.gateway.migrations",
    "unlearner": "services.unlearner.migrations",
}


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def migrations_dir(service: str) -> Path:
    """The Alembic script directory (env.py, versions/) of `service`'s migrations package."""
    package = MIGRATION_PACKAGES.get(service)
    if package is None:
        known = ", ".join(sorted(MIGRATION_PACKAGES))
        raise InvalidArgument(f"service {service!r} has no migrations; known: {known}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{service}'s migrations package {package} is not importable")
    return Path(next(iter(spec.submodule_search_locations)))


def _advisory_lock_key(service: str) -> int:
    digest = hashlib.sha256(f"veil-migrate:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _alembic_config(service: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service)))
    config.set_main_option("path_separator", "os")
    return config


def migrate(service: str, engine: Engine, revision: str = "head") -> str | None:
    """Upgrade `service`'s tables to `revision`; returns the revision the database is at.

    Runs in one transaction. On PostgreSQL it first takes a transaction-scoped advisory lock
    keyed by the service, so a second concurrent run waits and then finds nothing to do; on
    SQLite the write transaction (BEGIN IMMEDIATE) serialises runs the same way.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = _alembic_config(service)
    with translate_errors(), for_writes(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                         {"key": _advisory_lock_key(service)})
        config.attributes["connection"] = conn
        config.attributes["version_table"] = version_table(service)
        command.upgrade(config, revision)
        context = MigrationContext.configure(conn, opts={"version_table": version_table(service)})
        return context.get_current_revision()


@dataclasses.dataclass(frozen=True)
class SchemaState:
    """Where a service's tables stand against the migrations shipped with this code."""

    current: str | None  # the database's revision; None before the first migration
    head: str            # the newest revision of this code's migrations
    known: bool          # whether `current` is one of this code's revisions (or None)

    @property
    def ready(self) -> bool:
        """At head, or at a revision this code does not know: a later release's, which is
        compatible by the expand-then-contract rule (so a rollback is not held back)."""
        return self.current is not None and (self.current == self.head or not self.known)

    def __str__(self) -> str:
        at = self.current or "(no migrations applied)"
        newer = "" if self.known else " (newer than this code)"
        return f"database at revision {at}{newer}, code expects {self.head}"


def schema_state(service: str, engine: Engine) -> SchemaState:
    """Read `service`'s revision from the database; Unavailable when it cannot be reached."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(service))
    with translate_errors(), engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table(service)})
        current = context.get_current_revision()
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaState(current=current, head=script.get_current_head(), known=known)


def open_service_database(service: str, config: DatabaseConfig) -> Database:
    """`service`'s database, ready for this code: an embedded SQLite database is migrated here; on
    PostgreSQL the migration Job must have run (ConfigError naming both revisions otherwise)."""
    db = Database.from_config(config)
    try:
        if db.is_sqlite:
            migrate(service, db.engine)
        schema = schema_state(service, db.engine)
        if not schema.ready:
            raise ConfigError(f"{schema}; run `python -m veil.db migrate --service {service}`")
    except BaseException:
        db.dispose()
        raise
    return db


def wait_for_schema(service: str, engine: Engine, timeout_seconds: float,
                    poll_seconds: float = 2.0) -> SchemaState:
    """Poll until `service`'s tables are ready for this code (SchemaState.ready), waiting out an
    unreachable database too; FailedPrecondition naming both revisions when time runs out."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            state = schema_state(service, engine)
            if state.ready:
                return state
            reason = str(state)
        except Unavailable as exc:
            reason = str(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FailedPrecondition(
                f"{service}: schema not ready after {timeout_seconds:g} s: {reason}; run "
                f"`python -m veil.db migrate --service {service}` (the migration Job)")
        time.sleep(min(poll_seconds, remaining))


def run_migrations_from_env() -> None:
    """The body of every service's migrations/env.py (online mode, on the connection `migrate`
    passes in; offline SQL generation is not supported)."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m veil.db migrate --service NAME`")
    context.configure(connection=connection,
                      version_table=context.config.attributes["version_table"],
                      transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
