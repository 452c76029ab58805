"""Row <-> record conversion and the tenant-scoped lookups every store shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from veil.db.clock import as_utc
from veil.errors import DataLoss, NotFound, quoted
from veil.ledger import events_from_json
from veil.privacy import PrivacySettings
from services.gateway.state import tables as t
from services.gateway.state.models import (
    Candidate,
    FeedbackKind,
    LedgerEntryRecord,
    RefusedCandidate,
    ReleaseRecord,
    ReleaseState,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
)

def _decode(what: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except (KeyError, TypeError, ValueError) as exc:
        raise DataLoss(f"stored {what} is unreadable: {exc}") from exc


def session_record(row: Row) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id, tenant=row.tenant, subject_id=row.subject_id,
        state=SessionState(row.state), protect=tuple(row.protect),
        original=_decode(f"session {row.session_id}", lambda: StoredObject.from_json(row.original)),
        settings=_decode(f"session {row.session_id}", lambda: PrivacySettings.from_json(row.settings)),
        candidates_per_round=row.candidates_per_round, seed=int(row.seed),
        round_count=row.round_count, created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at), original_deleted_at=as_utc(row.original_deleted_at),
        request_id=row.request_id)


def round_record(row: Row) -> RoundRecord:
    what = f"round {row.number} of session {row.session_id}"
    return RoundRecord(
        session_id=row.session_id, number=row.number,
        settings=_decode(what, lambda: PrivacySettings.from_json(row.settings)),
        candidates=_decode(what, lambda: tuple(Candidate.from_json(c) for c in row.candidates)),
        feedback=None if row.feedback is None else FeedbackKind(row.feedback),
        next_settings=None if row.next_settings is None else _decode(
            what, lambda: PrivacySettings.from_json(row.next_settings)),
        created_at=as_utc(row.created_at), feedback_at=as_utc(row.feedback_at),
        feedback_request_id=row.feedback_request_id,
        refused=_decode(what, lambda: tuple(RefusedCandidate.from_json(r) for r in row.refused or ())))


def release_record(row: Row) -> ReleaseRecord:
    what = f"release {row.release_id}"
    return ReleaseRecord(
        release_id=row.release_id, tenant=row.tenant, session_id=row.session_id,
        subject_id=row.subject_id, request_id=row.request_id, round_number=row.round_number,
        candidate_index=row.candidate_index, receipt_id=row.receipt_id,
        source=_decode(what, lambda: StoredObject.from_json(row.source)),
        target=_decode(what, lambda: StoredObject.from_json(row.target)),
        state=ReleaseState(row.state), ledger_entry_id=row.ledger_entry_id,
        created_at=as_utc(row.created_at), published_at=as_utc(row.published_at))


def ledger_entry_record(row: Row) -> LedgerEntryRecord:
    return LedgerEntryRecord(
        entry_id=row.entry_id, subject_id=row.subject_id, session_id=row.session_id,
        receipt_id=row.receipt_id, epsilon=row.epsilon,
        events=tuple(events_from_json(row.events)), composed_after=row.composed_after,
        created_at=as_utc(row.created_at))


def load_session(conn: Connection, tenant: str, session_id: str, *, lock: bool = False) -> Row:
    """The session row of `tenant`; another tenant's session is NotFound, exactly like a
    missing one, so its existence does not leak."""
    query = sa.select(t.sessions).where(t.sessions.c.session_id == session_id,
                                        t.sessions.c.tenant == tenant)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"session {quoted(session_id)} not found")
    return row


def load_round(conn: Connection, session_id: str, number: int) -> Row | None:
    return conn.execute(sa.select(t.rounds).where(t.rounds.c.session_id == session_id,
                                                  t.rounds.c.number == number)).first()
