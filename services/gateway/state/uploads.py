"""Which subject an image belongs to, per tenant and content hash (gw_upload_subjects).

The first UploadImage that names a subject, or else the first session on the image, binds the
image's bytes to that subject; a later upload or session on the same bytes for another subject
is refused with FailedPrecondition naming both. The row is the cross-replica lock: two callers
binding one image to two subjects at once serialise on it and exactly one wins.
"""

from __future__ import annotations

import sqlalchemy as sa

from veil.db import Database, insert_ignore
from veil.db.clock import Clock, utcnow
from veil.errors import FailedPrecondition, quoted
from services.gateway.state import tables as t
from services.gateway.state.models import require_sha256


class UploadSubjects:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def bind(self, tenant: str, image_sha256: str, subject_id: str) -> None:
        """Bind the image to `subject_id` unless it is bound already; FailedPrecondition when it
        is bound to another subject. `subject_id` must be canonical (veil.privacy.subjects)."""
        require_sha256(image_sha256, "image sha256")
        table = t.upload_subjects
        with self._db.write() as conn:
            insert_ignore(conn, table, {"tenant": tenant, "image_sha256": image_sha256,
                                        "subject_id": subject_id, "created_at": self._clock()},
                          ["tenant", "image_sha256"])
            owner = conn.execute(sa.select(table.c.subject_id).where(
                table.c.tenant == tenant, table.c.image_sha256 == image_sha256)).scalar_one()
        if owner != subject_id:
            raise FailedPrecondition(
                f"image sha256 {image_sha256[:16]}... belongs to subject {quoted(owner)}, not "
                f"{quoted(subject_id)}: an image is charged to one subject's ledger only")
