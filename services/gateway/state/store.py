"""Sessions and rounds of the interactive loop, scoped by tenant.

Life of a session: `create_session` (ACTIVE, no rounds) -> `add_round` 1 -> `record_feedback`
(MORE/LESS/SET_EPSILON) on the latest round -> `add_round` n+1 -> ... -> `ReleaseStore.accept`
(ACCEPTED), or `close_session` / `fail_session`. Every read and write names the tenant; another
tenant's session is NotFound. Each change appends its audit record in the same transaction.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from veil.db import Database
from veil.db.clock import Clock, utcnow
from veil.errors import FailedPrecondition, InvalidArgument, quoted
from veil.privacy import PrivacySettings, require_candidates, require_seed
from services.gateway.state import tables as t
from services.gateway.state.audit import AuditLog, AuditRecord
from services.gateway.state.models import (
    Candidate,
    FeedbackKind,
    RefusedCandidate,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
    require_id,
)
from services.gateway.state.rows import load_round, load_session, round_record, session_record


def require_active(row: Row) -> None:
    if row.state != SessionState.ACTIVE.value:
        raise FailedPrecondition(f"session {row.session_id} is {row.state}; it takes no more "
                                 f"feedback or rounds")


class SessionStore:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock = utcnow) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    # --- sessions -------------------------------------------------------------------------------

    def create_session(self, tenant: str, subject_id: str, *, original: StoredObject,
                       protect: Sequence[str], settings: PrivacySettings,
                       candidates_per_round: int, seed: int, actor: str,
                       request_id: str | None = None) -> SessionRecord:
        """A new ACTIVE session without rounds. `settings` must budget exactly `protect`.
        `request_id` (unique per tenant) lets a retried CreateSession find it again."""
        require_id(tenant, "tenant")
        if request_id is not None:
            require_id(request_id, "request id")
        require_id(subject_id, "subject id", 256)
        protect = tuple(protect)
        if not protect or len(set(protect)) != len(protect):
            raise InvalidArgument(f"protect must name distinct attributes, got {list(protect)}")
        if set(settings.attribute_epsilon) != set(protect):
            raise InvalidArgument(f"settings budget {sorted(settings.attribute_epsilon)} but "
                                  f"protect names {sorted(protect)}")
        require_candidates(candidates_per_round, "candidates per round")
        require_seed(seed)
        now = self._clock()
        session_id = str(uuid.uuid4())
        with self._db.write() as conn:
            conn.execute(sa.insert(t.sessions).values(
                session_id=session_id, tenant=tenant, subject_id=subject_id,
                state=SessionState.ACTIVE.value, protect=list(protect),
                original=original.to_json(), original_key=original.key,
                settings=settings.to_json(),
                candidates_per_round=candidates_per_round, seed=str(seed), round_count=0,
                created_at=now, updated_at=now, request_id=request_id))
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action="session.create", target=session_id,
                outcome="ok", input_sha256=original.sha256,
                detail={"subject_id": subject_id, "protect": list(protect)}), conn)
            return session_record(load_session(conn, tenant, session_id))

    def get_session(self, tenant: str, session_id: str) -> SessionRecord:
        with self._db.read() as conn:
            return session_record(load_session(conn, tenant, session_id))

    def session_for_request(self, tenant: str, request_id: str) -> SessionRecord | None:
        """The session a CreateSession with this request id made, if any."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(t.sessions).where(
                t.sessions.c.tenant == tenant, t.sessions.c.request_id == request_id)).first()
        return None if row is None else session_record(row)

    def sessions_awaiting_round(self, older_than: timedelta,
                                limit: int = 100) -> list[SessionRecord]:
        """ACTIVE sessions of every tenant whose next round was never generated (no round yet,
        or the latest round has feedback and no successor), untouched for `older_than` and with
        no unexpired round lease: the work of a replica that died. Oldest first."""
        s, r, leases = t.sessions, t.rounds, t.round_leases
        now = self._clock()
        latest_answered = sa.exists().where(r.c.session_id == s.c.session_id,
                                            r.c.number == s.c.round_count,
                                            r.c.feedback.is_not(None))
        leased = sa.exists().where(leases.c.session_id == s.c.session_id,
                                   leases.c.expires_at > now)
        query = (sa.select(s).where(s.c.state == SessionState.ACTIVE.value,
                                    s.c.updated_at <= now - older_than, ~leased,
                                    sa.or_(s.c.round_count == 0, latest_answered))
                 .order_by(s.c.updated_at).limit(limit))
        with self._db.read() as conn:
            return [session_record(row) for row in conn.execute(query)]

    def list_sessions(self, tenant: str, *, subject_id: str | None = None, page_size: int = 50,
                      page_token: str = "") -> tuple[list[SessionRecord], str]:
        """Newest first; returns (page, next_page_token), the token empty on the last page."""
        if not 1 <= page_size <= 1000:
            raise InvalidArgument(f"page size must be in 1..1000, got {page_size}")
        s = t.sessions
        query = sa.select(s).where(s.c.tenant == tenant)
        if subject_id:
            query = query.where(s.c.subject_id == subject_id)
        if page_token:
            created, last_id = _decode_page_token(page_token)
            query = query.where(sa.or_(s.c.created_at < created,
                                       sa.and_(s.c.created_at == created, s.c.session_id < last_id)))
        query = query.order_by(s.c.created_at.desc(), s.c.session_id.desc()).limit(page_size + 1)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        page = [session_record(r) for r in rows[:page_size]]
        token = _page_token(page[-1]) if len(rows) > page_size else ""
        return page, token

    def sessions_on_original(self, tenant: str, original_key: str) -> dict[SessionState, int]:
        """How many of the tenant's sessions use the object `original_key`, by state."""
        s = t.sessions
        with self._db.read() as conn:
            rows = conn.execute(sa.select(s.c.state, sa.func.count()).where(
                s.c.tenant == tenant, s.c.original_key == original_key).group_by(s.c.state)).all()
        return {SessionState(state): count for state, count in rows}

    def close_session(self, tenant: str, session_id: str, *, actor: str) -> SessionRecord:
        return self._end(tenant, session_id, SessionState.CLOSED, actor, "session.close", "")

    def fail_session(self, tenant: str, session_id: str, *, actor: str, reason: str) -> SessionRecord:
        return self._end(tenant, session_id, SessionState.FAILED, actor, "session.fail", reason)

    def _end(self, tenant: str, session_id: str, state: SessionState, actor: str, action: str,
             reason: str) -> SessionRecord:
        with self._db.write() as conn:
            row = load_session(conn, tenant, session_id, lock=True)
            require_active(row)
            conn.execute(sa.update(t.sessions).where(t.sessions.c.session_id == session_id)
                         .values(state=state.value, updated_at=self._clock()))
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action=action, target=session_id, outcome="ok",
                detail={"reason": reason[:1024]} if reason else {}), conn)
            return session_record(load_session(conn, tenant, session_id))

    # --- rounds ---------------------------------------------------------------------------------

    def add_round(self, tenant: str, session_id: str, *, settings: PrivacySettings,
                  candidates: Sequence[Candidate], actor: str,
                  refused: Sequence[RefusedCandidate] = ()) -> RoundRecord:
        """Append the next round. Round 1 uses any settings budgeting the protected attributes;
        later rounds exactly the `next_settings` their predecessor's feedback recorded.
        The offered `candidates` and the `refused` ones, each in index order, together are indexed
        0..n-1 with 1 <= n <= candidates_per_round (none may be offered), and each offered one's
        receipt must spend every protected attribute (and identity when it is protected)."""
        candidates, refused = tuple(candidates), tuple(refused)
        offered_order, refused_order = [c.index for c in candidates], [r.index for r in refused]
        indices = offered_order + refused_order
        in_order = offered_order == sorted(offered_order) and refused_order == sorted(refused_order)
        if not indices or not in_order or sorted(indices) != list(range(len(indices))):
            raise InvalidArgument("round candidates, offered and refused, must be indexed 0..n-1 in order, n >= 1")
        with self._db.write() as conn:
            row = load_session(conn, tenant, session_id, lock=True)
            require_active(row)
            if len(indices) > row.candidates_per_round:
                raise InvalidArgument(f"{len(indices)} candidates; the session asked for "
                                      f"{row.candidates_per_round}")
            if set(settings.attribute_epsilon) != set(row.protect):
                raise InvalidArgument(f"round settings budget {sorted(settings.attribute_epsilon)}"
                                      f" but the session protects {sorted(row.protect)}")
            for candidate in candidates:
                _require_spends_everything(candidate, row.protect, settings)
            if row.round_count:
                latest = round_record(load_round(conn, session_id, row.round_count))
                if latest.feedback is None:
                    raise FailedPrecondition(f"round {row.round_count} of session {session_id} "
                                             f"has no feedback yet")
                if settings != latest.next_settings:
                    raise InvalidArgument(f"round {row.round_count + 1} must use the settings its "
                                          f"feedback asked for: {latest.next_settings}")
            number = row.round_count + 1
            now = self._clock()
            conn.execute(sa.insert(t.rounds).values(
                session_id=session_id, number=number, settings=settings.to_json(),
                candidates=[c.to_json() for c in candidates], created_at=now,
                # NULL when none was refused, as in rounds stored before refusals existed.
                **({"refused": [r.to_json() for r in refused]} if refused else {})))
            conn.execute(sa.update(t.sessions).where(t.sessions.c.session_id == session_id)
                         .values(round_count=number, updated_at=now))
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action="round.add", target=session_id, outcome="ok",
                input_sha256=row.original["sha256"],
                model_versions=tuple(sorted({c.model_version for c in candidates})),
                detail={"round": number, "candidates": len(candidates), "refused": len(refused)}), conn)
            return round_record(load_round(conn, session_id, number))

    def rounds(self, tenant: str, session_id: str, from_number: int = 1) -> list[RoundRecord]:
        with self._db.read() as conn:
            load_session(conn, tenant, session_id)
            rows = conn.execute(sa.select(t.rounds).where(
                t.rounds.c.session_id == session_id, t.rounds.c.number >= from_number)
                .order_by(t.rounds.c.number)).all()
        return [round_record(r) for r in rows]

    def latest_round(self, tenant: str, session_id: str) -> RoundRecord | None:
        with self._db.read() as conn:
            row = load_session(conn, tenant, session_id)
            latest = load_round(conn, session_id, row.round_count) if row.round_count else None
        return None if latest is None else round_record(latest)

    def record_feedback(self, tenant: str, session_id: str, round_number: int,
                        kind: FeedbackKind, *, next_settings: PrivacySettings,
                        actor: str, request_id: str | None = None) -> RoundRecord:
        """Record MORE_PRIVACY, LESS_PRIVACY or SET_EPSILON on the latest round (once), with the
        settings the next round will use (see controller.plan_next_round) and the request id
        (see `feedback_round`). ACCEPT goes through `ReleaseStore.accept`, which charges the
        ledger."""
        kind = FeedbackKind(kind)
        if request_id is not None:
            require_id(request_id, "request id")
        if kind is FeedbackKind.ACCEPT:
            raise InvalidArgument("accept through ReleaseStore.accept, which charges the ledger")
        with self._db.write() as conn:
            row = load_session(conn, tenant, session_id, lock=True)
            require_active(row)
            require_latest_unanswered(conn, row, round_number)
            if set(next_settings.attribute_epsilon) != set(row.protect):
                raise InvalidArgument(f"next settings budget {sorted(next_settings.attribute_epsilon)}"
                                      f" but the session protects {sorted(row.protect)}")
            self.mark_feedback(conn, session_id, round_number, kind, next_settings, request_id)
            self._audit.append(AuditRecord(
                tenant=tenant, actor=actor, action="round.feedback", target=session_id,
                outcome="ok", detail={"round": round_number, "feedback": kind.value}), conn)
            return round_record(load_round(conn, session_id, round_number))

    def feedback_round(self, tenant: str, session_id: str, request_id: str) -> RoundRecord | None:
        """The round whose feedback a request with this id recorded, if any: a retried Feedback
        whose first attempt died after recording finds it here instead of answering a newer
        round a second time."""
        with self._db.read() as conn:
            load_session(conn, tenant, session_id)
            row = conn.execute(sa.select(t.rounds).where(
                t.rounds.c.session_id == session_id,
                t.rounds.c.feedback_request_id == request_id)).first()
        return None if row is None else round_record(row)

    def mark_feedback(self, conn: Connection, session_id: str, number: int, kind: FeedbackKind,
                      next_settings: PrivacySettings | None = None,
                      request_id: str | None = None) -> None:
        now = self._clock()
        conn.execute(sa.update(t.rounds).where(t.rounds.c.session_id == session_id,
                                               t.rounds.c.number == number)
                     .values(feedback=kind.value, feedback_at=now, feedback_request_id=request_id,
                             next_settings=None if next_settings is None
                             else next_settings.to_json()))
        conn.execute(sa.update(t.sessions).where(t.sessions.c.session_id == session_id)
                     .values(updated_at=now))


def _require_spends_everything(candidate: Candidate, protect: Sequence[str],
                               settings: PrivacySettings) -> None:
    """A receipt that leaves a protected attribute (or a protected identity) out would release
    it without a charge."""
    spent = {a.attribute for a in candidate.spend.attributes}
    if spent != set(protect):
        raise InvalidArgument(f"candidate {candidate.index}: receipt spends {sorted(spent)} but the "
                              f"session protects {sorted(protect)}")
    if (settings.identity_epsilon is not None) != (candidate.spend.identity is not None):
        raise InvalidArgument(f"candidate {candidate.index}: receipt and settings disagree on "
                              f"whether identity is protected")


def require_latest_unanswered(conn: Connection, session: Row, round_number: int) -> Row:
    """The session's latest round if it is `round_number` and has no feedback yet."""
    if session.round_count == 0:
        raise FailedPrecondition(f"session {session.session_id} has no round yet")
    if round_number != session.round_count:
        raise FailedPrecondition(f"round {round_number} is not the latest round of session "
                                 f"{session.session_id} (latest: {session.round_count})")
    latest = load_round(conn, session.session_id, round_number)
    if latest.feedback is not None:
        raise FailedPrecondition(f"round {round_number} of session {session.session_id} was "
                                 f"already answered ({latest.feedback})")
    return latest


def _page_token(last: SessionRecord) -> str:
    raw = json.dumps({"c": last.created_at.isoformat(), "s": last.session_id}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(data["c"]), str(data["s"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(f"invalid page token {quoted(token)}") from None
