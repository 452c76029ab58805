"""Canonical subject ids and the subject of each uploaded image (issue: renaming a subject gave
it a fresh ledger budget).

- gw_upload_subjects: the subject an image's bytes belong to, per tenant and sha256. Filled from
  the existing sessions (the earliest session on an image wins).
- Subject ids already stored are rewritten to their canonical form (NFKC, trimmed, case-folded;
  veil.privacy.subjects) where that form is valid, in sessions, releases and the ledger; two
  spellings of one subject merge into one ledger. The merged summary row is marked stale (delta
  0, which no configuration has) so it is recomposed from its entries on the next read; a charge
  always recomposes. The ledger entries are append-only: their trigger is suspended for this
  rename only (the events are not touched). Ids with no valid canonical form stay as they are:
  the rows remain in the database, but the API refuses that spelling from now on.

Revision ID: 0003
Revises: 0002
"""

import contextlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copy of veil.privacy.subjects at this revision (a migration never imports live code).
CANONICAL = re.compile(r"[a-z0-9._-]{1,128}")
RENAMED_TABLES = ("gw_sessions", "gw_releases", "gw_ledger_entries")
STALE_DELTA = 0.0


def _canonical(subject_id: str) -> str | None:
    folded = unicodedata.normalize("NFKC", subject_id).strip().casefold()
    return folded if CANONICAL.fullmatch(folded) else None


def upgrade() -> None:
    op.create_table(
        "gw_upload_subjects",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "image_sha256", name="pk_gw_upload_subjects"),
    )
    conn = op.get_bind()
    _rename_subjects(conn)
    _bind_images(conn)


def _rename_subjects(conn: sa.Connection) -> None:
    subjects = conn.execute(sa.text(
        "SELECT tenant, subject_id, composed_epsilon, sum_epsilon, entry_count, updated_at "
        "FROM gw_ledger_subjects")).all()
    renames = {(row.tenant, row.subject_id): _canonical(row.subject_id) for row in subjects}
    for table in ("gw_sessions", "gw_releases"):
        for tenant, subject_id in conn.execute(sa.text(
                f"SELECT DISTINCT tenant, subject_id FROM {table}")).all():
            renames.setdefault((tenant, subject_id), _canonical(subject_id))
    renames = {key: new for key, new in renames.items() if new is not None and new != key[1]}
    if not renames:
        return
    merged: dict[tuple[str, str], list] = defaultdict(list)
    for row in subjects:
        merged[(row.tenant, renames.get((row.tenant, row.subject_id), row.subject_id))].append(row)
    for (tenant, subject_id), rows in merged.items():
        if len(rows) == 1 and rows[0].subject_id == subject_id:
            continue
        values = {"t": tenant, "s": subject_id, "c": sum(r.composed_epsilon for r in rows),
                  "e": sum(r.sum_epsilon for r in rows), "d": STALE_DELTA,
                  "n": sum(r.entry_count for r in rows), "u": max(r.updated_at for r in rows)}
        if any(r.subject_id == subject_id for r in rows):
            conn.execute(sa.text(
                "UPDATE gw_ledger_subjects SET composed_epsilon = :c, sum_epsilon = :e, "
                "delta = :d, entry_count = :n, updated_at = :u "
                "WHERE tenant = :t AND subject_id = :s"), values)
        else:
            conn.execute(sa.text(
                "INSERT INTO gw_ledger_subjects (tenant, subject_id, composed_epsilon, sum_epsilon, "
                "delta, entry_count, updated_at) VALUES (:t, :s, :c, :e, :d, :n, :u)"), values)
    with _ledger_entries_writable(conn):
        for (tenant, old), new in renames.items():
            for table in RENAMED_TABLES:
                conn.execute(sa.text(f"UPDATE {table} SET subject_id = :new "
                                     f"WHERE tenant = :t AND subject_id = :old"),
                             {"new": new, "t": tenant, "old": old})
    for (tenant, old) in renames:
        conn.execute(sa.text("DELETE FROM gw_ledger_subjects WHERE tenant = :t AND subject_id = :s"),
                     {"t": tenant, "s": old})


@contextlib.contextmanager
def _ledger_entries_writable(conn: sa.Connection) -> Iterator[None]:
    """Suspend the append-only UPDATE trigger on gw_ledger_entries for the rename only."""
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE gw_ledger_entries DISABLE TRIGGER gw_ledger_entries_no_change")
        yield
        op.execute("ALTER TABLE gw_ledger_entries ENABLE TRIGGER gw_ledger_entries_no_change")
        return
    op.execute("DROP TRIGGER gw_ledger_entries_no_update")
    yield
    op.execute("CREATE TRIGGER gw_ledger_entries_no_update BEFORE UPDATE ON gw_ledger_entries "
               "BEGIN SELECT RAISE(ABORT, 'gw_ledger_entries is append-only: UPDATE refused'); END")


def _bind_images(conn: sa.Connection) -> None:
    bound: set[tuple[str, str]] = set()
    rows = conn.execute(sa.text("SELECT tenant, subject_id, original, created_at FROM gw_sessions "
                                "ORDER BY created_at, session_id")).all()
    for row in rows:
        original = row.original if isinstance(row.original, dict) else json.loads(row.original)
        key = (row.tenant, original["sha256"])
        if key in bound:
            continue
        bound.add(key)
        conn.execute(sa.text("INSERT INTO gw_upload_subjects (tenant, image_sha256, subject_id, "
                             "created_at) VALUES (:t, :h, :s, :c)"),
                     {"t": row.tenant, "h": key[1], "s": row.subject_id, "c": row.created_at})


def downgrade() -> None:
    raise NotImplementedError("roll back the code, not the schema: the previous release ignores "
                              "the new table; canonical subject ids are valid ids for it too")
