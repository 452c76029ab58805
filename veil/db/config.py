"""`DatabaseConfig`: where a service's database is and how its connection pool behaves (VEIL_DATABASE_*)."""

from __future__ import annotations

import dataclasses

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from veil.config import env_field
from veil.errors import ConfigError

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

