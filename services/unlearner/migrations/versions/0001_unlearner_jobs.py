"""Unlearner state: the job table (train and unlearn jobs, their leases and progress).

Written by hand as a frozen snapshot (never import the live table definitions here: a later
change to them must come with its own migration).

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


def _ts(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "ul_jobs",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("requested_version", sa.String(16), nullable=True),
        sa.Column("base_version", sa.String(16), nullable=True),
        sa.Column("result_version", sa.String(16), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("spec", Json, nullable=False),
        sa.Column("session_ids", Json, nullable=False),
        sa.Column("progress", Json, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        _ts("lease_expires_at", nullable=True),
        _ts("run_after"),
        _ts("created_at"), _ts("updated_at"),
        _ts("started_at", nullable=True), _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_ul_jobs"),
    )
    op.create_index("ix_ul_jobs_tenant_request_id", "ul_jobs", ["tenant", "request_id"], unique=True)
    op.create_index("ix_ul_jobs_state_run_after", "ul_jobs", ["state", "run_after"])
    op.create_index("ix_ul_jobs_tenant_model_state", "ul_jobs", ["tenant", "model", "state"])


def downgrade() -> None:
    raise NotImplementedError("the job table holds queued and running jobs; dropping it is never "
                              "automatic (roll back the code, not the schema)")
