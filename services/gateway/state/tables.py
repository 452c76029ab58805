"""The gateway's SQL tables (SQLAlchemy Core). All names carry the `gw_` prefix: the gateway owns
them and no other service reads them.

The schema is created by the hand-written migrations in services/gateway/migrations/; a test
checks that the migrated database matches these definitions exactly.
"""

from __future__ import annotations

import sqlalchemy as sa

from veil.db.schema import NAMING, Json, datetime_column

metadata = sa.MetaData(naming_convention=NAMING)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

TENANT = sa.String(128)
SUBJECT = sa.String(256)
ID = sa.String(36)

sessions = sa.Table(
    "gw_sessions", metadata,
    sa.Column("session_id", ID, primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("subject_id", SUBJECT, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("protect", Json, nullable=False),
    sa.Column("original", Json, nullable=False),
    # The original's object key, for retention: an original is deleted once no session needs it.
    sa.Column("original_key", sa.String(1024), nullable=False),
    sa.Column("settings", Json, nullable=False),
    sa.Column("candidates_per_round", sa.Integer, nullable=False),
    # uint64 seeds do not fit a signed BIGINT; kept as decimal text.
    sa.Column("seed", sa.String(20), nullable=False),
    sa.Column("round_count", sa.Integer, nullable=False),
    datetime_column("created_at"),
    datetime_column("updated_at"),
    datetime_column("original_deleted_at", nullable=True),
    # The CreateSession request id: a retry after a crash finds the session it already created.
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Index(None, "tenant", "subject_id", "created_at"),
    sa.Index(None, "tenant", "created_at"),
    sa.Index(None, "tenant", "original_key"),
    sa.Index(None, "tenant", "request_id", unique=True),
    sa.Index(None, "state", "updated_at"),
)

rounds = sa.Table(
    "gw_rounds", metadata,
    sa.Column("session_id", ID, sa.ForeignKey("gw_sessions.session_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("settings", Json, nullable=False),
    sa.Column("candidates", Json, nullable=False),
    sa.Column("feedback", sa.String(16), nullable=True),
    # The settings the feedback asked for: the next round's, so a restart can regenerate it.
    sa.Column("next_settings", Json, nullable=True),
    datetime_column("created_at"),
    datetime_column("feedback_at", nullable=True),
    # The Feedback request id: a retry after a crash finds the feedback it already recorded.
    sa.Column("feedback_request_id", sa.String(128), nullable=True),
    # Candidates the anonymizer refused (RefusedCandidate JSON); NULL when none was.
    sa.Column("refused", Json, nullable=True),
)

ledger_subjects = sa.Table(
    "gw_ledger_subjects", metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("subject_id", SUBJECT, primary_key=True),
    sa.Column("composed_epsilon", sa.Float, nullable=False),
    sa.Column("sum_epsilon", sa.Float, nullable=False),
    sa.Column("delta", sa.Float, nullable=False),
    sa.Column("entry_count", sa.Integer, nullable=False),
    datetime_column("updated_at"),
)

ledger_entries = sa.Table(
    "gw_ledger_entries", metadata,
    sa.Column("entry_id", ID, primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("subject_id", SUBJECT, nullable=False),
    sa.Column("session_id", ID, nullable=True),
    sa.Column("receipt_id", sa.String(128), nullable=False),
    sa.Column("events", Json, nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("composed_after", sa.Float, nullable=False),
    datetime_column("created_at"),
    sa.ForeignKeyConstraint(["tenant", "subject_id"],
                            ["gw_ledger_subjects.tenant", "gw_ledger_subjects.subject_id"]),
    sa.UniqueConstraint("tenant", "subject_id", "receipt_id"),
    # Defence in depth behind the API's validation: a charge is finite and positive (on
    # PostgreSQL NaN sorts above every number, so the upper bound also excludes it).
    sa.CheckConstraint("epsilon > 0 AND epsilon < 1e308", name="epsilon_finite_positive"),
)

releases = sa.Table(
    "gw_releases", metadata,
    sa.Column("release_id", ID, primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("session_id", ID, sa.ForeignKey("gw_sessions.session_id"), nullable=False,
              unique=True),
    sa.Column("subject_id", SUBJECT, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("round_number", sa.Integer, nullable=False),
    sa.Column("candidate_index", sa.Integer, nullable=False),
    sa.Column("receipt_id", sa.String(128), nullable=False),
    sa.Column("source", Json, nullable=False),
    sa.Column("target", Json, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("ledger_entry_id", ID, sa.ForeignKey("gw_ledger_entries.entry_id"), nullable=False),
    datetime_column("created_at"),
    datetime_column("published_at", nullable=True),
    sa.Index(None, "state", "created_at"),
)

idempotency_keys = sa.Table(
    "gw_idempotency_keys", metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(128), nullable=False),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("claim_token", ID, nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=True),
    datetime_column("claimed_at"),
    datetime_column("completed_at", nullable=True),
    sa.Index(None, "claimed_at"),
)

# The replica generating a session's next round, until when (services.gateway.state.round_leases).
round_leases = sa.Table(
    "gw_round_leases", metadata,
    sa.Column("session_id", ID, sa.ForeignKey("gw_sessions.session_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    datetime_column("expires_at"),
)

# The subject an image (by content hash) was uploaded or first used for: every session on those
# bytes charges that subject's ledger, so renaming the subject gives no fresh budget.
upload_subjects = sa.Table(
    "gw_upload_subjects", metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("image_sha256", sa.String(64), primary_key=True),
    sa.Column("subject_id", SUBJECT, nullable=False),
    datetime_column("created_at"),
)

audit_log = sa.Table(
    "gw_audit_log", metadata,
    sa.Column("audit_id", BigId, primary_key=True, autoincrement=True),
    datetime_column("at"),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("input_sha256", sa.String(64), nullable=True),
    sa.Column("model_versions", Json, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.Index(None, "tenant", "at"),
)

unlearning_requests = sa.Table(
    "gw_unlearning_requests", metadata,
    sa.Column("request_id", ID, primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("session_id", ID, sa.ForeignKey("gw_sessions.session_id"), nullable=False),
    sa.Column("release_id", ID, sa.ForeignKey("gw_releases.release_id"), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("original", Json, nullable=False),
    sa.Column("protected", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("batch_id", ID, nullable=True),
    sa.Column("job_id", sa.String(128), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    datetime_column("created_at"),
    datetime_column("updated_at"),
    sa.Index(None, "model", "status", "created_at"),
    sa.Index(None, "batch_id"),
    sa.Index(None, "session_id"),
)
