"""Accepting a candidate: the ledger charge, the release record and the unlearning requests.

Publication protocol (charge first, publish after, roll forward on a crash):

1. `accept` runs ONE write transaction: lock the subject's ledger row, re-check the session
   (ACTIVE, latest round unanswered, candidate exists), compose the subject's events with the
   candidate's and refuse with FailedPrecondition if the cap would be passed; otherwise append the
   ledger entry, mark the round ACCEPT and the session ACCEPTED, insert the release (PENDING,
   with its target key), queue one unlearning request per dependent model, append the audit
   record, and commit. Nothing exists outside the database yet.
2. Only after that commit does the caller copy the candidate's bytes to `release.target` in the
   object store and call `mark_published`.
3. A crash between 1 and 2 leaves a PENDING release: charged, not yet published. On start-up
   (and periodically) the gateway lists `pending_releases` and finishes step 2 for each; the copy
   is idempotent (same bytes, same key).

Hence: a refused release publishes nothing (refusal happens before commit, publication after);
a published release is always charged (its charge committed first); a charged release is
published eventually (roll forward). Unlearning requests become claimable only once their
release is PUBLISHED (services.gateway.state.unlearning).

`accept` is idempotent per request id: the same request id on an accepted session returns the
first result (`replayed=True`, nothing charged again); a different one is FailedPrecondition.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from veil.db import Database
from veil.db.clock import Clock, utcnow
from veil.errors import FailedPrecondition, NotFound, quoted
from services.gateway.state import tables as t
from services.gateway.state.audit import AuditLog, AuditRecord
from services.gateway.state.ledger_store import LedgerStore
from services.gateway.state.models import (
    AcceptResult,
    Candidate,
    Charge,
    FeedbackKind,
    ReleaseRecord,
    ReleaseState,
    SessionState,
    require_id,
)
from services.gateway.state.rows import (
    ledger_entry_record,
    load_session,
    release_record,
    round_record,
    session_record,
)
from services.gateway.state.store import SessionStore, require_active, require_latest_unanswered
from services.gateway.state.unlearning import UnlearningStatus


class ReleaseStore:
    def __init__(self, db: Database, sessions: SessionStore, ledger: LedgerStore, audit: AuditLog,
                 clock: Clock = utcnow) -> None:
        self._db = db
        self._sessions = sessions
        self._ledger = ledger
        self._audit = audit
        self._clock = clock

    def accept(self, tenant: str, session_id: str, candidate_index: int, *, request_id: str,
               release_key: str, dependent_models: Sequence[str], actor: str,
               round_number: int | None = None) -> AcceptResult:
        """Charge and record the release of `candidate_index` of the latest round (see module
        docstring). `release_key` is where the caller will publish it (same bucket as the
        candidate); `dependent_models` are the registered models trained on the original."""
        require_id(request_id, "request id")
        require_id(release_key, "release key", 1024)
        models = tuple(sorted({require_id(m, "model name", 256) for m in dependent_models}))
        with self._db.read() as conn:
            subject_id = load_session(conn, tenant, session_id).subject_id
        try:
            with self._db.write() as conn:
                # Lock order everywhere: the subject's ledger row, then the session row.
                self._ledger.lock_subject(conn, tenant, subject_id)
                session = load_session(conn, tenant, session_id, lock=True)
                if session.state == SessionState.ACCEPTED.value:
                    return self._replay(conn, tenant, session_id, request_id)
                require_active(session)
                number = session.round_count if round_number is None else round_number
                latest = round_record(require_latest_unanswered(conn, session, number))
                candidate = latest.candidate(candidate_index)
                charge = self._ledger.charge_in(conn, tenant, subject_id, candidate.spend,
                                                session_id)
                self._sessions.mark_feedback(conn, session_id, number, FeedbackKind.ACCEPT,
                                             request_id=request_id)
                release = self._insert_release(conn, session, number, candidate, charge,
                                               request_id, release_key)
                request_ids = self._queue_unlearning(conn, session, release, models)
                self._audit.append(AuditRecord(
                    tenant=tenant, actor=actor, action="release.accept", target=session_id,
                    outcome="charged", input_sha256=session.original["sha256"],
                    model_versions=(candidate.model_version,),
                    detail={"round": number, "candidate": candidate_index,
                            "receipt_id": candidate.spend.receipt_id,
                            "epsilon": charge.entry.epsilon,
                            "composed_epsilon": charge.summary.composed_epsilon,
                            "unlearning_models": list(models)}), conn)
                return AcceptResult(session_record(load_session(conn, tenant, session_id)),
                                    release, charge, request_ids, replayed=False)
        except FailedPrecondition as refusal:
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action="release.accept", target=session_id,
                outcome="refused", detail={"candidate": candidate_index,
                                           "reason": str(refusal)[:1024]}))
            raise

    def accepted(self, tenant: str, session_id: str) -> AcceptResult | None:
        """What accepting the session committed (with the subject's current ledger totals), or
        None while it is not accepted."""
        with self._db.read() as conn:
            if load_session(conn, tenant, session_id).state != SessionState.ACCEPTED.value:
                return None
            return self._result(conn, tenant, session_id)

    def get_release(self, tenant: str, session_id: str) -> ReleaseRecord | None:
        with self._db.read() as conn:
            load_session(conn, tenant, session_id)
            row = conn.execute(sa.select(t.releases).where(
                t.releases.c.session_id == session_id)).first()
        return None if row is None else release_record(row)

    def mark_published(self, tenant: str, release_id: str, *, actor: str) -> ReleaseRecord:
        """Record that the release's bytes are at its target key (idempotent)."""
        releases = t.releases
        with self._db.write() as conn:
            row = conn.execute(sa.select(releases).where(
                releases.c.release_id == release_id, releases.c.tenant == tenant)
                .with_for_update()).first()
            if row is None:
                raise NotFound(f"release {quoted(release_id)} not found")
            if row.state == ReleaseState.PUBLISHED.value:
                return release_record(row)
            conn.execute(sa.update(releases).where(releases.c.release_id == release_id)
                         .values(state=ReleaseState.PUBLISHED.value, published_at=self._clock()))
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action="release.publish", target=row.session_id,
                outcome="ok", detail={"release_id": release_id, "key": row.target["key"]}), conn)
            return release_record(conn.execute(sa.select(releases).where(
                releases.c.release_id == release_id)).one())

    def pending_releases(self, older_than: timedelta = timedelta(0),
                         limit: int = 100) -> list[ReleaseRecord]:
        """Charged but unpublished releases of every tenant, oldest first, for the recovery loop
        (pass an `older_than` longer than a normal publish so in-flight ones are left alone)."""
        releases = t.releases
        cutoff = self._clock() - older_than
        with self._db.read() as conn:
            rows = conn.execute(sa.select(releases).where(
                releases.c.state == ReleaseState.PENDING.value, releases.c.created_at <= cutoff)
                .order_by(releases.c.created_at).limit(limit)).all()
        return [release_record(r) for r in rows]

    # --- steps of accept ------------------------------------------------------------------------

    def _replay(self, conn: Connection, tenant: str, session_id: str,
                request_id: str) -> AcceptResult:
        result = self._result(conn, tenant, session_id)
        if result.release.request_id != request_id:
            raise FailedPrecondition(f"session {session_id} was already accepted")
        return result

    def _result(self, conn: Connection, tenant: str, session_id: str) -> AcceptResult:
        release = release_record(conn.execute(sa.select(t.releases).where(
            t.releases.c.session_id == session_id)).one())
        entry = ledger_entry_record(conn.execute(sa.select(t.ledger_entries).where(
            t.ledger_entries.c.entry_id == release.ledger_entry_id)).one())
        requests = t.unlearning_requests
        request_ids = tuple(conn.execute(sa.select(requests.c.request_id).where(
            requests.c.release_id == release.release_id).order_by(requests.c.model)).scalars())
        summary = self._ledger.summary_in(conn, tenant, release.subject_id)
        return AcceptResult(session_record(load_session(conn, tenant, session_id)), release,
                            Charge(entry, summary), request_ids, replayed=True)

    def _insert_release(self, conn: Connection, session, number: int, candidate: Candidate,
                        charge: Charge, request_id: str, release_key: str) -> ReleaseRecord:
        now = self._clock()
        release_id = str(uuid.uuid4())
        target = dataclasses.replace(candidate.image, key=release_key)
        conn.execute(sa.insert(t.releases).values(
            release_id=release_id, tenant=session.tenant, session_id=session.session_id,
            subject_id=session.subject_id, request_id=request_id, round_number=number,
            candidate_index=candidate.index, receipt_id=candidate.spend.receipt_id,
            source=candidate.image.to_json(), target=target.to_json(),
            state=ReleaseState.PENDING.value, ledger_entry_id=charge.entry.entry_id,
            created_at=now))
        conn.execute(sa.update(t.sessions).where(t.sessions.c.session_id == session.session_id)
                     .values(state=SessionState.ACCEPTED.value, updated_at=now))
        return release_record(conn.execute(sa.select(t.releases).where(
            t.releases.c.release_id == release_id)).one())

    def _queue_unlearning(self, conn: Connection, session, release: ReleaseRecord,
                          models: Sequence[str]) -> tuple[str, ...]:
        now = self._clock()
        ids = tuple(str(uuid.uuid4()) for _ in models)
        if models:
            conn.execute(sa.insert(t.unlearning_requests), [{
                "request_id": request_id, "tenant": session.tenant,
                "session_id": session.session_id, "release_id": release.release_id,
                "model": model, "original": session.original,
                "protected": release.target.to_json(), "status": UnlearningStatus.PENDING.value,
                "attempts": 0, "created_at": now, "updated_at": now,
            } for request_id, model in zip(ids, models)])
        return ids
