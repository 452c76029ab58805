"""Engines and transactions: `Database.write()` and `Database.read()` yield a Connection inside a
transaction, and lost connections or lock conflicts become Unavailable or Aborted.

On SQLite a write transaction starts with BEGIN IMMEDIATE (it takes the database write lock at
once, so a read-then-write never fails half-way on a lock upgrade); on PostgreSQL callers lock
the rows they need with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from veil.db.config import DatabaseConfig
from veil.errors import Aborted, Unavailable

_WRITE_OPTION = "veil_write_transaction"


def for_writes(engine: Engine) -> Engine:
    """`engine` whose transactions take the SQLite write lock at BEGIN (BEGIN IMMEDIATE)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


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
        self._writer = for_writes(engine)

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


