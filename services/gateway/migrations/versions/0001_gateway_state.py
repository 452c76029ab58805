"""Gateway state: sessions, rounds, ledger, releases, idempotency keys, audit log, unlearning queue.

Written by hand as a frozen snapshot (never import the live table definitions here: a later
change to them must come with its own migration). The audit log and the ledger entries are
append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("gw_audit_log", "gw_ledger_entries")


def _ts(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "gw_sessions",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("protect", Json, nullable=False),
        sa.Column("original", Json, nullable=False),
        sa.Column("original_key", sa.String(1024), nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("candidates_per_round", sa.Integer, nullable=False),
        sa.Column("seed", sa.String(20), nullable=False),
        sa.Column("round_count", sa.Integer, nullable=False),
        _ts("created_at"), _ts("updated_at"), _ts("original_deleted_at", nullable=True),
        sa.PrimaryKeyConstraint("session_id", name="pk_gw_sessions"),
    )
    op.create_index("ix_gw_sessions_tenant_subject_id_created_at", "gw_sessions",
                    ["tenant", "subject_id", "created_at"])
    op.create_index("ix_gw_sessions_tenant_created_at", "gw_sessions", ["tenant", "created_at"])
    op.create_index("ix_gw_sessions_tenant_original_key", "gw_sessions", ["tenant", "original_key"])

    op.create_table(
        "gw_rounds",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("candidates", Json, nullable=False),
        sa.Column("feedback", sa.String(16), nullable=True),
        sa.Column("next_settings", Json, nullable=True),
        _ts("created_at"), _ts("feedback_at", nullable=True),
        sa.PrimaryKeyConstraint("session_id", "number", name="pk_gw_rounds"),
        sa.ForeignKeyConstraint(["session_id"], ["gw_sessions.session_id"], ondelete="CASCADE",
                                name="fk_gw_rounds_session_id_gw_sessions"),
    )

    op.create_table(
        "gw_ledger_subjects",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("composed_epsilon", sa.Float, nullable=False),
        sa.Column("sum_epsilon", sa.Float, nullable=False),
        sa.Column("delta", sa.Float, nullable=False),
        sa.Column("entry_count", sa.Integer, nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("tenant", "subject_id", name="pk_gw_ledger_subjects"),
    )

    op.create_table(
        "gw_ledger_entries",
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("composed_after", sa.Float, nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("entry_id", name="pk_gw_ledger_entries"),
        sa.ForeignKeyConstraint(["tenant", "subject_id"],
                                ["gw_ledger_subjects.tenant", "gw_ledger_subjects.subject_id"],
                                name="fk_gw_ledger_entries_tenant_subject_id_gw_ledger_subjects"),
        sa.UniqueConstraint("tenant", "subject_id", "receipt_id",
                            name="uq_gw_ledger_entries_tenant_subject_id_receipt_id"),
        sa.CheckConstraint("epsilon > 0 AND epsilon < 1e308",
                           name="ck_gw_ledger_entries_epsilon_finite_positive"),
    )

    op.create_table(
        "gw_releases",
        sa.Column("release_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("round_number", sa.Integer, nullable=False),
        sa.Column("candidate_index", sa.Integer, nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("source", Json, nullable=False),
        sa.Column("target", Json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ledger_entry_id", sa.String(36), nullable=False),
        _ts("created_at"), _ts("published_at", nullable=True),
        sa.PrimaryKeyConstraint("release_id", name="pk_gw_releases"),
        sa.UniqueConstraint("session_id", name="uq_gw_releases_session_id"),
        sa.ForeignKeyConstraint(["session_id"], ["gw_sessions.session_id"],
                                name="fk_gw_releases_session_id_gw_sessions"),
        sa.ForeignKeyConstraint(["ledger_entry_id"], ["gw_ledger_entries.entry_id"],
                                name="fk_gw_releases_ledger_entry_id_gw_ledger_entries"),
    )
    op.create_index("ix_gw_releases_state_created_at", "gw_releases", ["state", "created_at"])

    op.create_table(
        "gw_idempotency_keys",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(128), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claim_token", sa.String(36), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=True),
        _ts("claimed_at"), _ts("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_gw_idempotency_keys"),
    )
    op.create_index("ix_gw_idempotency_keys_claimed_at", "gw_idempotency_keys", ["claimed_at"])

    op.create_table(
        "gw_audit_log",
        sa.Column("audit_id", BigId, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=True),
        sa.Column("model_versions", Json, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", Json, nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name="pk_gw_audit_log"),
    )
    op.create_index("ix_gw_audit_log_tenant_at", "gw_audit_log", ["tenant", "at"])

    op.create_table(
        "gw_unlearning_requests",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("release_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("original", Json, nullable=False),
        sa.Column("protected", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column("job_id", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("request_id", name="pk_gw_unlearning_requests"),
        sa.ForeignKeyConstraint(["session_id"], ["gw_sessions.session_id"],
                                name="fk_gw_unlearning_requests_session_id_gw_sessions"),
        sa.ForeignKeyConstraint(["release_id"], ["gw_releases.release_id"],
                                name="fk_gw_unlearning_requests_release_id_gw_releases"),
    )
    op.create_index("ix_gw_unlearning_requests_model_status_created_at", "gw_unlearning_requests",
                    ["model", "status", "created_at"])
    op.create_index("ix_gw_unlearning_requests_batch_id", "gw_unlearning_requests", ["batch_id"])
    op.create_index("ix_gw_unlearning_requests_session_id", "gw_unlearning_requests",
                    ["session_id"])

    for table in APPEND_ONLY:
        _forbid_changes(table)


def _forbid_changes(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END")


def downgrade() -> None:
    raise NotImplementedError("the gateway's state holds a privacy ledger and an audit log; "
                              "dropping them is never automatic")
