"""Refused candidates of a round: with verified edits the anonymizer may refuse a candidate whose
edit it could not verify, and the round keeps why.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_rounds", sa.Column("refused", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                         nullable=True))


def downgrade() -> None:
    raise NotImplementedError("roll back the code, not the schema: the previous release ignores "
                              "this column (expand-then-contract)")
