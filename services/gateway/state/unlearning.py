"""The unlearning-request queue and the retention of originals.

`ReleaseStore.accept` queues one request per model trained on the original (PENDING). A request
becomes claimable once its release is PUBLISHED. The gateway's dispatcher batches them per
(tenant, model): models are registered per tenant, and object keys are relative to a tenant.

    for tenant, model in queue.models_waiting():
        batch = queue.claim_batch(tenant, model, max_items)   # PENDING -> BATCHED, one batch id
        job = unlearner.Unlearn(request_id=batch.batch_id, pairs=...)
    queue.mark_submitted(batch.batch_id, job.job_id)          # -> SUBMITTED
    ... queue.mark_done(batch.batch_id) / mark_failed(batch.batch_id, error, retry=...)

Pass the batch id as the Unlearn request id: if the gateway dies after the unlearner took the job
but before `mark_submitted`, `batches(BATCHED)` hands the batch back on restart and the unlearner
deduplicates the resubmission. Two replicas never claim the same request (FOR UPDATE SKIP LOCKED
on PostgreSQL; the write lock on SQLite).

Retention (policy `after_unlearning`): an original is due for deletion once a session on it was
accepted and published, every unlearning request of that session is DONE (plus a grace period),
and no other session on the same original is still active or waiting for its own updates.
Originals of sessions that were never accepted are kept. With policy `keep` nothing is due.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Row

from veil.config import env_field
from veil.db import Database
from veil.db.clock import Clock, as_utc, utcnow
from veil.errors import FailedPrecondition, InvalidArgument, NotFound, quoted
from services.gateway.state import tables as t
from services.gateway.state.audit import IMAGE_UPLOAD, AuditLog, AuditRecord
from services.gateway.state.models import ReleaseState, SessionState, StoredObject, require_id
from services.gateway.state.rows import load_session


class UnlearningStatus(str, enum.Enum):
    PENDING = "pending"
    BATCHED = "batched"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class UnlearningRequest:
    request_id: str
    tenant: str
    session_id: str
    release_id: str
    model: str
    original: StoredObject
    protected: StoredObject
    status: UnlearningStatus
    batch_id: str | None
    job_id: str | None
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(frozen=True)
class UnlearningBatch:
    batch_id: str
    tenant: str
    model: str
    requests: tuple[UnlearningRequest, ...]

    @property
    def job_id(self) -> str | None:
        return self.requests[0].job_id if self.requests else None


def _request(row: Row) -> UnlearningRequest:
    return UnlearningRequest(
        request_id=row.request_id, tenant=row.tenant, session_id=row.session_id,
        release_id=row.release_id, model=row.model, original=StoredObject.from_json(row.original),
        protected=StoredObject.from_json(row.protected), status=UnlearningStatus(row.status),
        batch_id=row.batch_id, job_id=row.job_id, attempts=row.attempts, error=row.error,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))


_req = t.unlearning_requests
_ACTIVE_BATCH = (UnlearningStatus.BATCHED.value, UnlearningStatus.SUBMITTED.value)


class UnlearningQueue:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def _claimable(self):
        published = sa.select(t.releases.c.release_id).where(
            t.releases.c.state == ReleaseState.PUBLISHED.value)
        return sa.and_(_req.c.status == UnlearningStatus.PENDING.value,
                       _req.c.release_id.in_(published))

    def models_waiting(self) -> list[tuple[str, str]]:
        """(tenant, model) pairs with claimable requests, the one waiting longest first."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(_req.c.tenant, _req.c.model)
                                .where(self._claimable()).group_by(_req.c.tenant, _req.c.model)
                                .order_by(sa.func.min(_req.c.created_at))).all()
        return [(r.tenant, r.model) for r in rows]

    def claim_batch(self, tenant: str, model: str, max_items: int) -> UnlearningBatch | None:
        """Up to `max_items` claimable requests of the tenant's `model`, oldest first, as one
        new batch."""
        if max_items < 1:
            raise InvalidArgument(f"max_items must be >= 1, got {max_items}")
        with self._db.write() as conn:
            ids = list(conn.execute(
                sa.select(_req.c.request_id).where(_req.c.tenant == tenant, _req.c.model == model,
                                                   self._claimable())
                .order_by(_req.c.created_at, _req.c.request_id).limit(max_items)
                .with_for_update(skip_locked=True)).scalars())
            if not ids:
                return None
            batch_id = str(uuid.uuid4())
            conn.execute(sa.update(_req).where(_req.c.request_id.in_(ids)).values(
                status=UnlearningStatus.BATCHED.value, batch_id=batch_id,
                attempts=_req.c.attempts + 1, updated_at=self._clock()))
            return self._batch_in(conn, batch_id)

    def batches(self, status: UnlearningStatus) -> list[UnlearningBatch]:
        """Batches whose requests are in `status` (BATCHED or SUBMITTED: in flight), for the
        dispatcher to resume after a restart."""
        if status.value not in _ACTIVE_BATCH:
            raise InvalidArgument(f"batches are listed by an in-flight status, not {status.value}")
        with self._db.read() as conn:
            ids = conn.execute(sa.select(_req.c.batch_id).where(_req.c.status == status.value)
                               .group_by(_req.c.batch_id)
                               .order_by(sa.func.min(_req.c.updated_at))).scalars().all()
            return [self._batch_in(conn, batch_id) for batch_id in ids]

    def get_batch(self, batch_id: str) -> UnlearningBatch:
        with self._db.read() as conn:
            return self._batch_in(conn, batch_id)

    def mark_submitted(self, batch_id: str, job_id: str) -> UnlearningBatch:
        require_id(job_id, "job id")
        return self._transition(batch_id, (UnlearningStatus.BATCHED.value,),
                                {"status": UnlearningStatus.SUBMITTED.value, "job_id": job_id})

    def mark_done(self, batch_id: str) -> UnlearningBatch:
        return self._transition(batch_id, _ACTIVE_BATCH,
                                {"status": UnlearningStatus.DONE.value, "error": None})

    def mark_failed(self, batch_id: str, error: str, *, retry: bool) -> UnlearningBatch:
        """A failed batch: back to PENDING for a later batch when `retry`, else FAILED (its
        originals are then kept until an operator intervenes)."""
        if retry:
            return self._transition(batch_id, _ACTIVE_BATCH, {
                "status": UnlearningStatus.PENDING.value, "batch_id": None, "job_id": None,
                "error": error[:4096]})
        return self._transition(batch_id, _ACTIVE_BATCH,
                                {"status": UnlearningStatus.FAILED.value, "error": error[:4096]})

    def requests_for_session(self, tenant: str, session_id: str) -> list[UnlearningRequest]:
        with self._db.read() as conn:
            load_session(conn, tenant, session_id)
            rows = conn.execute(sa.select(_req).where(_req.c.session_id == session_id)
                                .order_by(_req.c.model)).all()
        return [_request(r) for r in rows]

    def _transition(self, batch_id: str, allowed: Sequence[str],
                    values: dict[str, object]) -> UnlearningBatch:
        with self._db.write() as conn:
            batch = self._batch_in(conn, batch_id)
            states = {r.status.value for r in batch.requests}
            if not states <= set(allowed):
                raise FailedPrecondition(f"unlearning batch {batch_id} is {sorted(states)}; "
                                         f"expected {list(allowed)}")
            conn.execute(sa.update(_req).where(_req.c.batch_id == batch_id)
                         .values(updated_at=self._clock(), **values))
            # A retried batch releases its requests, so read them back by id.
            ids = [r.request_id for r in batch.requests]
            rows = conn.execute(sa.select(_req).where(_req.c.request_id.in_(ids))
                                .order_by(_req.c.created_at, _req.c.request_id)).all()
        return UnlearningBatch(batch_id, batch.tenant, batch.model,
                               tuple(_request(r) for r in rows))

    @staticmethod
    def _batch_in(conn, batch_id: str) -> UnlearningBatch:
        rows = conn.execute(sa.select(_req).where(_req.c.batch_id == batch_id)
                            .order_by(_req.c.created_at, _req.c.request_id)).all()
        if not rows:
            raise NotFound(f"unlearning batch {quoted(batch_id)} not found")
        return UnlearningBatch(batch_id, rows[0].tenant, rows[0].model,
                               tuple(_request(r) for r in rows))


# --- retention ----------------------------------------------------------------------------------

class RetentionPolicy(str, enum.Enum):
    AFTER_UNLEARNING = "after_unlearning"
    KEEP = "keep"


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    policy: str = env_field("VEIL_RETENTION_POLICY", RetentionPolicy.AFTER_UNLEARNING.value,
                            choices=tuple(p.value for p in RetentionPolicy),
                            doc="when originals are deleted: after_unlearning or keep")
    grace_seconds: float = env_field(
        "VEIL_RETENTION_GRACE_SECONDS", 0.0, min=0.0,
        doc="wait this long after the last model update before deleting an original")


@dataclasses.dataclass(frozen=True)
class DueOriginal:
    """An original object that may now be deleted, and the sessions that used it."""

    tenant: str
    original: StoredObject
    session_ids: tuple[str, ...]
    # When the last of those sessions finished (its last unlearning request or its release).
    finished_at: datetime


def _uploaded_after(tenant, key, since) -> sa.Exists:
    """Whether the audit log records an upload of `key` by `tenant` after `since` (values or
    columns of an enclosing query)."""
    log = t.audit_log
    return sa.exists().where(log.c.tenant == tenant, log.c.target == key, log.c.action == IMAGE_UPLOAD,
                             log.c.at > since)


class Retention:
    def __init__(self, db: Database, audit: AuditLog, config: RetentionConfig = RetentionConfig(),
                 clock: Clock = utcnow) -> None:
        self._db = db
        self._audit = audit
        self.config = config
        self._clock = clock

    def originals_due(self, limit: int = 100) -> list[DueOriginal]:
        if self.config.policy == RetentionPolicy.KEEP.value:
            return []
        cutoff = self._clock() - timedelta(seconds=self.config.grace_seconds)
        s, rel = t.sessions, t.releases
        # A closed session released nothing: its original is due once it was closed.
        finished = sa.or_(self._finished_condition(s, rel), s.c.state == SessionState.CLOSED.value)
        last_update = sa.func.coalesce(
            sa.select(sa.func.max(_req.c.updated_at)).where(_req.c.session_id == s.c.session_id)
            .correlate(s).scalar_subquery(), rel.c.published_at, s.c.updated_at)
        other = t.sessions.alias("other")
        other_rel = t.releases.alias("other_release")
        blocker = sa.exists().where(
            other.c.tenant == s.c.tenant, other.c.original_key == s.c.original_key,
            other.c.session_id != s.c.session_id, other.c.original_deleted_at.is_(None),
            sa.or_(other.c.state == SessionState.ACTIVE.value,
                   sa.and_(other.c.state == SessionState.ACCEPTED.value,
                           ~sa.exists().where(other_rel.c.session_id == other.c.session_id,
                                              self._finished_condition(other, other_rel)))))
        # Uploads are content-addressed: the same bytes uploaded after the sessions finished are
        # a new upload of the owner's, which this policy must not take away.
        uploaded_again = _uploaded_after(s.c.tenant, s.c.original_key, last_update)
        query = (sa.select(s.c.tenant, s.c.original_key, s.c.original, s.c.session_id,
                           last_update.label("finished_at"))
                 .outerjoin(rel, rel.c.session_id == s.c.session_id)
                 .where(s.c.original_deleted_at.is_(None), finished, last_update <= cutoff,
                        ~blocker, ~uploaded_again)
                 .order_by(s.c.tenant, s.c.original_key, s.c.session_id))
        due: dict[tuple[str, str], DueOriginal] = {}
        with self._db.read() as conn:
            for row in conn.execute(query):
                key = (row.tenant, row.original_key)
                if key in due:
                    item = due[key]
                    due[key] = dataclasses.replace(item, session_ids=(*item.session_ids, row.session_id),
                                                   finished_at=max(item.finished_at, as_utc(row.finished_at)))
                elif len(due) < limit:
                    due[key] = DueOriginal(row.tenant, StoredObject.from_json(row.original),
                                           (row.session_id,), as_utc(row.finished_at))
        return list(due.values())

    @staticmethod
    def _finished_condition(session, release):
        """Accepted, published, and no unlearning request of the session left undone."""
        # Correlated explicitly: nested two subqueries deep (the blocker), automatic
        # correlation would not reach `session` and would read every session's requests.
        unfinished = sa.exists().where(_req.c.session_id == session.c.session_id,
                                       _req.c.status != UnlearningStatus.DONE.value).correlate(session)
        return sa.and_(session.c.state == SessionState.ACCEPTED.value,
                       release.c.state == ReleaseState.PUBLISHED.value, ~unfinished)

    def uploaded_since(self, tenant: str, original_key: str, since: datetime) -> bool:
        """Whether the audit log records an upload of `original_key` after `since`: the owner's
        new upload of the same bytes, which retention must not take away."""
        with self._db.read() as conn:
            return conn.execute(sa.select(_uploaded_after(tenant, original_key, since))).scalar_one()

    def mark_original_deleted(self, tenant: str, original_key: str, created_by: datetime, *,
                              actor: str) -> int:
        """Record that the original object was deleted for the sessions on it created by
        `created_by` (when it became due); returns the number of sessions marked. A session
        created since, on the same bytes uploaded again, keeps its original."""
        s = t.sessions
        with self._db.write() as conn:
            marked = conn.execute(sa.update(s).where(
                s.c.tenant == tenant, s.c.original_key == original_key, s.c.created_at <= created_by,
                s.c.original_deleted_at.is_(None)).values(original_deleted_at=self._clock()))
            if marked.rowcount:
                self._audit.append(AuditRecord(
                    tenant=tenant, actor=actor, action="original.delete", target=original_key[:256],
                    outcome="ok", detail={"sessions": marked.rowcount}), conn)
            return marked.rowcount
