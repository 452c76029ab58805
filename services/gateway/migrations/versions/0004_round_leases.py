"""Leases on in-flight rounds, so that another replica takes over a dead one's round within
seconds instead of after the anonymizer deadline.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_round_leases",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_gw_round_leases"),
        sa.ForeignKeyConstraint(["session_id"], ["gw_sessions.session_id"], ondelete="CASCADE",
                                name="fk_gw_round_leases_session_id_gw_sessions"),
    )


def downgrade() -> None:
    raise NotImplementedError("roll back the code, not the schema: the previous release ignores "
                              "this table")
