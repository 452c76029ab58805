"""The append-only audit log: who did what to which target, the input's sha256, the model
versions involved and the outcome. Never image bytes.

Append-only twice over: this API has no update or delete, and the migration installs triggers
that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on gw_audit_log. A database superuser
or the table owner can still disable triggers; production should run the gateway under a role
that does not own its tables.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from veil.db import Database
from veil.db.clock import Clock, as_utc, utcnow
from veil.errors import InvalidArgument, quoted
from services.gateway.state import tables as t
from services.gateway.state.models import require_id, require_sha256

MAX_DETAIL_BYTES = 8192
MAX_DETAIL_STRING = 1024
_SCALARS = (str, int, float, bool, type(None))


# The action of an image upload, whose target is the object's key: retention reads it (an
# original uploaded again after its sessions finished is the owner's new upload, kept).
IMAGE_UPLOAD = "image.upload"
# The owner deleted an upload (DeleteUpload); its target is the object's key.
UPLOAD_DELETE = "upload.delete"


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    tenant: str
    actor: str
    action: str                      # e.g. "session.create", "release.accept"
    target: str                      # e.g. the session id
    outcome: str                     # e.g. "ok", "refused", "failed"
    input_sha256: str | None = None
    model_versions: tuple[str, ...] = ()
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    audit_id: int | None = None      # set when read back
    at: datetime | None = None       # set when written

    def __post_init__(self) -> None:
        require_id(self.tenant, "audit tenant")
        require_id(self.actor, "audit actor", 256)
        require_id(self.action, "audit action", 64)
        require_id(self.target, "audit target", 256)
        require_id(self.outcome, "audit outcome", 32)
        if self.input_sha256 is not None:
            require_sha256(self.input_sha256, "audit input_sha256")
        object.__setattr__(self, "model_versions", tuple(self.model_versions))
        _check_detail(self.detail)


def _check_detail(detail: Mapping[str, Any]) -> None:
    """Only small JSON scalars (and lists of them): the log must never carry image bytes."""
    for key, value in detail.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if not isinstance(item, _SCALARS):
                raise InvalidArgument(f"audit detail {quoted(key)}: {type(item).__name__} is not allowed")
            if isinstance(item, str) and len(item) > MAX_DETAIL_STRING:
                raise InvalidArgument(f"audit detail {quoted(key)}: string longer than {MAX_DETAIL_STRING}")
    if len(json.dumps(dict(detail))) > MAX_DETAIL_BYTES:
        raise InvalidArgument(f"audit detail larger than {MAX_DETAIL_BYTES} bytes")


class AuditLog:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def append(self, record: AuditRecord, conn: Connection | None = None) -> int:
        """Append `record`; inside `conn`'s transaction when given (so the record commits or
        rolls back with the action it describes), else in its own. Returns the audit id."""
        if conn is None:
            with self._db.write() as own:
                return self.append(record, own)
        values = {
            "at": self._clock(), "tenant": record.tenant, "actor": record.actor,
            "action": record.action, "target": record.target, "outcome": record.outcome,
            "input_sha256": record.input_sha256, "model_versions": list(record.model_versions),
            "detail": dict(record.detail),
        }
        result = conn.execute(sa.insert(t.audit_log).values(**values)
                              .returning(t.audit_log.c.audit_id))
        return int(result.scalar_one())

    def records(self, tenant: str, *, target: str | None = None, after_id: int = 0,
                limit: int = 100) -> Sequence[AuditRecord]:
        """The tenant's records in append order, from after `after_id`."""
        log = t.audit_log
        query = (sa.select(log).where(log.c.tenant == tenant, log.c.audit_id > after_id)
                 .order_by(log.c.audit_id).limit(limit))
        if target is not None:
            query = query.where(log.c.target == target)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        return [AuditRecord(tenant=r.tenant, actor=r.actor, action=r.action, target=r.target,
                            outcome=r.outcome, input_sha256=r.input_sha256,
                            model_versions=tuple(r.model_versions), detail=r.detail,
                            audit_id=r.audit_id, at=as_utc(r.at)) for r in rows]
