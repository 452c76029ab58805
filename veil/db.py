"""SQL plumbing shared by every service: configuration, engines, transactions, migrations.

One database may hold several services' tables. Each service owns its tables (names carry the
service's prefix, e.g. `gw_` for the gateway) and its own Alembic history, recorded in its own
version table (`alembic_version_<service>`), so migrating one service never touches another's.

Migrations live in `services/<service>/migrations/` (an Alembic `env.py` that calls
`run_migrations_from_env`, and hand-written `versions/`). Run them with

    python -m veil.db migrate --service gateway [--url URL]

(a Kubernetes Job does exactly this). It is idempotent, and concurrent runs are safe: on
PostgreSQL they serialise on an advisory lock, on SQLite on the database write lock.

    python -m veil.db wait --service gateway [--timeout-seconds N]

returns once the database is at the revision this code expects (a Deployment's init container
runs it, so a new release serves only after its migration Job has run); it never migrates.

Transactions: `Database.write()` and `Database.read()` yield a Connection inside a transaction.
On SQLite a write transaction starts with BEGIN IMMEDIATE (it takes the database write lock at
once, so a read-then-write never fails half-way on a lock upgrade); on PostgreSQL callers lock
the rows they need with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from veil.config import env_field, from_env
from veil.errors import Aborted, ConfigError, FailedPrecondition, InvalidArgument, Unavailable

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"

_WRITE_OPTION = "veil_write_transaction"
_DRIVERS = {"sqlite": "sqlite+pysqlite", "sqlite+pysqlite": "sqlite+pysqlite",
            "postgresql": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg"}


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    url: str = env_field(
        "VEIL_DATABASE_URL", "sqlite:///var/veil.db",
        doc="SQLAlchemy URL: sqlite:///path (embedded) or postgresql+psycopg://user@host/db")
    pool_size: int = env_field("VEIL_DATABASE_POOL_SIZE", 5, min=1, doc="PostgreSQL pool size")
    max_overflow: int = env_field("VEIL_DATABASE_MAX_OVERFLOW", 10, min=0,
                                  doc="PostgreSQL connections allowed beyond the pool size")
    pool_timeout_seconds: float = env_field(
        "VEIL_DATABASE_POOL_TIMEOUT_SECONDS", 30.0, min=0.1,
        doc="seconds to wait for a pooled connection before UNAVAILABLE")
    pool_recycle_seconds: float = env_field(
        "VEIL_DATABASE_POOL_RECYCLE_SECONDS", 1800.0, min=1.0,
        doc="replace pooled connections older than this")
    connect_timeout_seconds: int = env_field(
        "VEIL_DATABASE_CONNECT_TIMEOUT_SECONDS", 10, min=1, doc="PostgreSQL connect timeout")
    busy_timeout_ms: int = env_field(
        "VEIL_DATABASE_BUSY_TIMEOUT_MS", 30000, min=0,
        doc="SQLite: how long a transaction waits for the database write lock")

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalise_url(self.url))


def normalise_url(url: str) -> str:
    """The URL with its driver made explicit (psycopg 3, pysqlite); ConfigError if unsupported."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"VEIL_DATABASE_URL={url!r}: not a database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(f"VEIL_DATABASE_URL={url!r}: unsupported database "
                          f"{parsed.drivername!r}; use sqlite:/// or postgresql+psycopg://")
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        # Every pooled connection would open its own empty in-memory database.
        raise ConfigError(f"VEIL_DATABASE_URL={url!r}: SQLite needs a file path")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(config: DatabaseConfig) -> Engine:
    """An engine with pool settings; for SQLite also WAL, foreign keys and a busy timeout."""
    url = make_url(config.url)
    if url.drivername.startswith("sqlite"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": config.busy_timeout_ms / 1000})
        _configure_sqlite(engine, config.busy_timeout_ms)
        return engine
    return sa.create_engine(
        url, pool_size=config.pool_size, max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout_seconds, pool_recycle=config.pool_recycle_seconds,
        pool_pre_ping=True,
        connect_args={"connect_timeout": config.connect_timeout_seconds, "application_name": "veil"})


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # pysqlite's legacy transaction control issues BEGIN lazily (not before SELECT or DDL), which
    # breaks isolation; SQLAlchemy's documented remedy is to switch it off and emit BEGIN ourselves.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine plus read and write transactions that turn lost connections into Unavailable."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})

    @classmethod
    def from_config(cls, config: DatabaseConfig) -> Database:
        return cls(create_engine(config))

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that will write: committed on success, rolled back on any exception."""
        with translate_errors(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction for reads: no write lock on SQLite, no row locks on PostgreSQL (where
        each statement sees the latest committed data, READ COMMITTED)."""
        with translate_errors(), self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def translate_errors() -> Iterator[None]:
    """Map "unreachable or locked" to Unavailable and "deadlock or serialization failure" to
    Aborted (both retryable); every other database error passes unchanged."""
    try:
        yield
    except DBAPIError as exc:
        if _is_conflict(exc):
            raise Aborted(f"database transaction aborted, retry: {exc.orig}") from exc
        if exc.connection_invalidated or _is_unavailable(exc):
            raise Unavailable(f"database unavailable: {exc.orig}") from exc
        raise


def _is_conflict(exc: DBAPIError) -> bool:
    """PostgreSQL deadlock or serialization failure: the transaction may simply be retried."""
    from psycopg import errors as pg_errors

    return isinstance(exc.orig, pg_errors.TransactionRollback)


def _is_unavailable(exc: DBAPIError) -> bool:
    if not isinstance(exc, OperationalError):
        return False
    message = str(exc.orig).lower()
    if "database is locked" in message or "unable to open database" in message:
        return True
    # psycopg raises OperationalError only for connection-level failures.
    return type(exc.orig).__module__.startswith("psycopg")


def insert_ignore(conn: Connection, table: sa.Table, values: dict, index_elements: list[str]) -> None:
    """INSERT a row unless one with the same key exists (ON CONFLICT DO NOTHING; both backends)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=index_elements))


# --- migrations ---------------------------------------------------------------------------------

def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def migrations_dir(service: str) -> Path:
    path = SERVICES_DIR / service / "migrations"
    if not (path / "env.py").is_file():
        known = sorted(p.parent.parent.name for p in SERVICES_DIR.glob("*/migrations/env.py"))
        raise InvalidArgument(f"service {service!r} has no migrations; known: {', '.join(known)}")
    return path


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
    with translate_errors(), engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil.db", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("migrate", help="apply a service's migrations (idempotent)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    wait = commands.add_parser("wait", help="wait until a service's tables are at this code's revision")
    wait.add_argument("--timeout-seconds", type=float, default=300.0,
                      help="give up (exit 1) after this long (default: 300)")
    for command in (up, wait):
        command.add_argument("--service", required=True, help="service whose tables, e.g. gateway")
        command.add_argument("--url", help="database URL (default: VEIL_DATABASE_URL)")
    args = parser.parse_args(argv)
    try:
        config = from_env(DatabaseConfig)
        if args.url:
            config = dataclasses.replace(config, url=args.url)
        engine = create_engine(config)
        try:
            if args.command == "migrate":
                message = f"database at revision {migrate(args.service, engine, args.revision)}"
            else:
                message = str(wait_for_schema(args.service, engine, args.timeout_seconds))
        finally:
            engine.dispose()
    except FailedPrecondition as exc:
        print(f"veil.db {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, InvalidArgument, Unavailable) as exc:
        print(f"veil.db {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.service}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
