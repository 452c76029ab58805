"""Building blocks every service's tables (SQLAlchemy Core) share."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Constraint and index names derived from their tables and columns, so hand-written migrations
# can name them and a test can compare a migrated database with the table definitions.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def datetime_column(name: str, nullable: bool = False) -> sa.Column:
    """A timezone-aware timestamp column (read it back through veil.db.clock.as_utc on SQLite)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)
