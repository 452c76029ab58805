"""Request ids on sessions and feedback, so that a retried CreateSession or Feedback whose first
attempt died half-way finds the work it already committed; an index for the round recovery.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_sessions", sa.Column("request_id", sa.String(128), nullable=True))
    op.create_index("ix_gw_sessions_tenant_request_id", "gw_sessions", ["tenant", "request_id"],
                    unique=True)
    op.create_index("ix_gw_sessions_state_updated_at", "gw_sessions", ["state", "updated_at"])
    op.add_column("gw_rounds", sa.Column("feedback_request_id", sa.String(128), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("roll back the code, not the schema: the previous release ignores "
                              "these columns (expand-then-contract)")
