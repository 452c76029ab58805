"""The unlearner's SQL tables (SQLAlchemy Core). Names carry the `ul_` prefix: the unlearner owns
them and no other service reads them.

The schema is created by the hand-written migrations in services/unlearner/migrations/; a test
checks that the migrated database matches these definitions exactly.
"""

from __future__ import annotations

import sqlalchemy as sa

from veil.db.schema import NAMING, Json, datetime_column

SERVICE = "unlearner"  # veil.db's name for these tables' migrations
metadata = sa.MetaData(naming_convention=NAMING)


jobs = sa.Table(
    "ul_jobs", metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    # The caller's idempotency key: one job per (tenant, request id).
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    # The version the caller named; NULL: the newest when the job starts.
    sa.Column("requested_version", sa.String(16), nullable=True),
    # The version the running (or last) attempt started from.
    sa.Column("base_version", sa.String(16), nullable=True),
    sa.Column("result_version", sa.String(16), nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    # What to do: the manifest and training settings, or the pairs and update hyperparameters.
    sa.Column("spec", Json, nullable=False),
    sa.Column("session_ids", Json, nullable=False),
    sa.Column("progress", Json, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    # The runner holding the job (unique per claim) and until when, unless it renews.
    sa.Column("lease_owner", sa.String(128), nullable=True),
    datetime_column("lease_expires_at", nullable=True),
    # A queued job is not started before this (a retry after an unavailable dependency waits).
    datetime_column("run_after"),
    datetime_column("created_at"),
    datetime_column("updated_at"),
    datetime_column("started_at", nullable=True),
    datetime_column("finished_at", nullable=True),
    sa.Index(None, "tenant", "request_id", unique=True),
    sa.Index(None, "state", "run_after"),
    sa.Index(None, "tenant", "model", "state"),
)
