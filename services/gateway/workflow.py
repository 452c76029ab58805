"""The gateway's session workflow, without gRPC: uploads, the create / feedback / accept state
machine, reads, round events and downloads, over services.gateway.state (state), the anonymizer (rounds),
the unlearner (dependent models) and the object store. It takes and returns plain records; the
servicer (servicer.py) converts messages and delegates here.

Every method works in the caller's tenant only: another tenant's session, ledger or object is
NOT_FOUND, exactly like a missing one. Database and object-store calls are synchronous and run
grouped, one thread hop per step that must wait for something else (the anonymizer, the
unlearner, the publisher). The work is idempotent by request id: a retry whose first attempt died
half-way finds the session or the feedback it committed and finishes it (so a retried create whose
first attempt failed on its input returns that FAILED session).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

from services.gateway.anonymizer import AnonymizerClient
from services.gateway.auth import Caller
from services.gateway.config import GatewayConfig
from services.gateway.downstream import input_refused
from services.gateway.events import CHANGED, SessionEvents
from services.gateway.metrics import (FEEDBACK, LEDGER_REFUSALS, RELEASE_EPSILON, RELEASES,
                                      SESSION_ROUNDS, SESSIONS_CREATED, UNLEARNING_REQUESTS)
from services.gateway.privacy import candidates_per_round, initial_settings, protected_attributes
from services.gateway.releases import ReleasePublisher
from services.gateway.rounds import RoundGenerator, end_failed_session, require_round_settled
from services.gateway.unlearner import UnlearnerClient
from services.gateway.uploads import EXTENSIONS, UPLOADS_PREFIX, stored_image
from veil.errors import (DataLoss, FailedPrecondition, InvalidArgument, NotFound, VeilError,
                         quoted)
from veil.db.clock import utcnow
from veil.faces.photo import decode_photo
from veil.ledger import BudgetExceeded
from veil.privacy import PrivacySettings
from veil.privacy.subjects import canonical_subject_id
from services.gateway.state import (
    AcceptResult,
    AuditRecord,
    FeedbackKind,
    GatewayState,
    LedgerEntryRecord,
    LedgerSummary,
    ReleaseState,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
    plan_next_round,
)
from services.gateway.state.audit import IMAGE_UPLOAD, UPLOAD_DELETE
from services.gateway.state.models import require_id
from veil.store import ObjectInfo, ObjectStore
from veil.store.base import CHUNK_SIZE
from veil.v1 import common_pb2

DEFAULT_PAGE_SIZE = 50

UrlFor = Callable[[StoredObject], str]


@dataclasses.dataclass(frozen=True)
class Upload:
    """An uploaded image's bytes as received, checked against the sha256 the caller declared."""

    data: bytes
    content_type: str
    subject_id: str      # canonical, or "" (the image is bound to a subject by its first session)
    sha256: str

    @classmethod
    def received(cls, data: bytes, content_type: str, subject_id: str,
                 declared_sha256: str = "") -> Upload:
        sha256 = hashlib.sha256(data).hexdigest()
        if declared_sha256 and declared_sha256 != sha256:
            raise DataLoss(f"upload: received content has sha256 {sha256}, declared {declared_sha256}")
        subject = canonical_subject_id(subject_id, "upload: subject_id") if subject_id else ""
        return cls(data, content_type, subject, sha256)


@dataclasses.dataclass(frozen=True)
class NewSession:
    """What a new session asks for. `privacy` None: the model's default level; `candidates` and
    `seed` 0: the defaults (a random seed)."""

    subject_id: str
    image: ObjectInfo | None
    protect: tuple[str, ...]
    privacy: common_pb2.PrivacySetting | None = None
    candidates: int = 0
    seed: int = 0
    request_id: str = ""


@dataclasses.dataclass(frozen=True)
class Answer:
    """The owner's answer to a session's latest round."""

    session_id: str
    kind: FeedbackKind
    candidate: int = 0                            # ACCEPT: the candidate released
    epsilon: Mapping[str, float] | None = None    # SET_EPSILON: the next round's eps
    request_id: str = ""


@dataclasses.dataclass(frozen=True)
class Release:
    """An accepted session's release with the round it came from."""

    result: AcceptResult
    accepted_round: RoundRecord


@dataclasses.dataclass(frozen=True)
class SessionView:
    """A session as a caller sees it: its latest round and, once accepted, its release."""

    session: SessionRecord
    latest_round: RoundRecord | None
    release: Release | None = None


@dataclasses.dataclass(frozen=True)
class Answered:
    """What an answer led to: the session, and the next round (None once accepted)."""

    view: SessionView
    next_round: RoundRecord | None


# What round_events yields: a stored round, a generation's progress, the ended session (last).
RoundEvent = RoundRecord | common_pb2.Progress | SessionView


class SessionWorkflow:
    def __init__(self, state: GatewayState, store: ObjectStore, anonymizer: AnonymizerClient,
                 unlearner: UnlearnerClient | None, rounds: RoundGenerator,
                 publisher: ReleasePublisher, events: SessionEvents, config: GatewayConfig) -> None:
        self._state = state
        self._store = store
        self._anonymizer = anonymizer
        self._unlearner = unlearner
        self._rounds = rounds
        self._publisher = publisher
        self._events = events
        self._config = config

    @property
    def bucket(self) -> str:
        return self._store.bucket

    def url_for(self, tenant: str) -> UrlFor:
        """Presigned GET URLs of the tenant's objects ("" where the store has none)."""
        store = self._store.for_tenant(tenant)
        expires = timedelta(seconds=self._config.presigned_url_seconds)
        return lambda obj: store.presigned_get_url(obj.key, expires) or ""

    # --- uploads and downloads -------------------------------------------------------------------

    async def upload(self, caller: Caller, upload: Upload) -> StoredObject:
        """Store a decodable image content-addressed (uploads/<sha256>.<ext>), audited."""
        return await asyncio.to_thread(self._store_upload, caller, upload)

    def _store_upload(self, caller: Caller, upload: Upload) -> StoredObject:
        pixels = decode_photo(upload.data, self._config.max_photo_side, upload.content_type, "upload").pixels
        # Without a subject the image is bound by its first session instead.
        if upload.subject_id:
            self._state.upload_subjects.bind(caller.tenant, upload.sha256, upload.subject_id)
        image = stored_image(self._store.for_tenant(caller.tenant), upload.data,
                             upload.content_type, upload.sha256, pixels.shape)
        self._state.audit.append(AuditRecord(
            tenant=caller.tenant, actor=caller.actor, action=IMAGE_UPLOAD, target=image.key,
            outcome="ok", input_sha256=upload.sha256,
            detail={"size": image.size, "width": image.width, "height": image.height,
                    "subject_id": upload.subject_id}))
        return image

    async def download(self, caller: Caller, ref: ObjectInfo) -> AsyncIterator[bytes]:
        """The object's content in chunks, verified against `ref.sha256` when given; audited."""
        store = self._store.for_tenant(caller.tenant)
        chunks = await asyncio.to_thread(store.iter_chunks, ref.key, expected_sha256=ref.sha256,
                                         chunk_size=CHUNK_SIZE)
        try:
            await asyncio.to_thread(self._state.audit.append, AuditRecord(
                tenant=caller.tenant, actor=caller.actor, action="object.download",
                target=ref.key[:256], outcome="ok", input_sha256=ref.sha256))
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            # Release the file or HTTP response at once, also when the caller went away (a read
            # still running in its thread when the call was cancelled is left to the collector).
            with contextlib.suppress(ValueError):
                getattr(chunks, "close", lambda: None)()

    # --- creating a session ----------------------------------------------------------------------

    async def create(self, caller: Caller, new: NewSession) -> SessionView:
        """A session with its first round (a session whose input can never work ends FAILED)."""
        tenant = caller.tenant
        if new.request_id:
            earlier = await asyncio.to_thread(self._state.sessions.session_for_request, tenant,
                                              new.request_id)
            if earlier is not None:  # a retry whose first attempt died after creating it
                return await self._with_first_round(caller, earlier)
        subject_id = canonical_subject_id(new.subject_id)
        info = await self._anonymizer.model_info()
        protect = protected_attributes(list(new.protect), info)
        settings = initial_settings(new.privacy, protect, info, self._state.controller)
        candidates = candidates_per_round(new.candidates, info)
        if new.image is None:
            raise InvalidArgument("no image: upload one with UploadImage and pass its ref")
        image = new.image

        def store_session() -> SessionRecord:
            original = self._original(tenant, image)
            self._state.upload_subjects.bind(tenant, original.sha256, subject_id)
            return self._state.sessions.create_session(
                tenant, subject_id, original=original, protect=protect,
                settings=settings, candidates_per_round=candidates,
                seed=new.seed or secrets.randbits(64) or 1, actor=caller.actor,
                request_id=new.request_id or None)

        session = await asyncio.to_thread(store_session)
        SESSIONS_CREATED.inc()
        return await self._with_first_round(caller, session)

    def _original(self, tenant: str, ref: ObjectInfo) -> StoredObject:
        """The session's photo: the tenant's object, readable and matching its ref (any size up to
        VEIL_MAX_PHOTO_SIDE; the anonymizer finds its faces)."""
        store = self._store.for_tenant(tenant)
        stat = store.stat(ref.key)
        if stat.size > self._config.max_upload_bytes:
            raise InvalidArgument(f"image {quoted(ref.key)} has {stat.size} bytes; at most "
                                  f"{self._config.max_upload_bytes} (VEIL_MAX_UPLOAD_BYTES)")
        data = store.get(ref.key, expected_sha256=ref.sha256)
        pixels = decode_photo(data, self._config.max_photo_side, stat.content_type, f"image {quoted(ref.key)}").pixels
        height, width = pixels.shape[:2]
        return StoredObject(bucket=self._store.bucket, key=ref.key,
                            sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                            content_type=stat.content_type, width=width, height=height)

    async def _with_first_round(self, caller: Caller, session: SessionRecord) -> SessionView:
        if session.state is SessionState.ACTIVE and session.round_count == 0:
            await self._generate(caller, session, 1, session.settings)
        return await asyncio.to_thread(self._view_of, caller.tenant, session.session_id)

    async def _generate(self, caller: Caller, session: SessionRecord, number: int,
                        settings: PrivacySettings) -> RoundRecord:
        """Round `number`; a refusal of the session's input ends the session FAILED."""
        try:
            return await self._rounds.generate(session, number, settings, caller.actor)
        except VeilError as exc:
            if input_refused(exc):
                await end_failed_session(self._state, session, caller.actor, exc)
            raise

    # --- reads -----------------------------------------------------------------------------------

    async def session(self, tenant: str, session_id: str) -> SessionView:
        return await asyncio.to_thread(self._view_of, tenant, require_id(session_id, "session_id"))

    def _view_of(self, tenant: str, session_id: str) -> SessionView:
        return self._view(tenant, self._state.sessions.get_session(tenant, session_id))

    def _view(self, tenant: str, session: SessionRecord,
              accepted: AcceptResult | None = None) -> SessionView:
        sessions = self._state.sessions
        latest = sessions.latest_round(tenant, session.session_id)
        if accepted is None and session.state is SessionState.ACCEPTED:
            accepted = self._state.releases.accepted(tenant, session.session_id)
        if accepted is None:
            return SessionView(session, latest)
        [accepted_round] = sessions.rounds(tenant, session.session_id,
                                           accepted.release.round_number)
        return SessionView(session, latest, Release(accepted, accepted_round))

    async def sessions(self, tenant: str, subject_id: str | None, page_size: int,
                       page_token: str) -> tuple[list[SessionRecord], str]:
        """A page of the tenant's sessions, newest first, and the next page's token."""
        return await asyncio.to_thread(
            self._state.sessions.list_sessions, tenant,
            subject_id=canonical_subject_id(subject_id) if subject_id else None,
            page_size=page_size or DEFAULT_PAGE_SIZE, page_token=page_token)

    async def ledger(self, tenant: str,
                     subject_id: str) -> tuple[LedgerSummary, list[LedgerEntryRecord]]:
        """A subject's ledger: its summary and entries."""
        subject_id = canonical_subject_id(subject_id)
        ledger = self._state.ledger
        return await asyncio.to_thread(
            lambda: (ledger.summary(tenant, subject_id), ledger.entries(tenant, subject_id)))

    async def round_events(self, tenant: str, session_id: str,
                           from_round: int) -> AsyncIterator[RoundEvent]:
        """The session's rounds from `from_round` as they are stored, progress while one is
        generated on this replica, and the session once it has ended (the last event)."""
        session_id = require_id(session_id, "session_id")
        if from_round < 0:
            raise InvalidArgument(f"from_round must be >= 0, got {from_round}")
        sessions = self._state.sessions
        await asyncio.to_thread(sessions.get_session, tenant, session_id)
        number = max(1, from_round)
        with self._events.subscribe(session_id) as events:
            while True:
                stored, session = await asyncio.to_thread(
                    lambda: (sessions.rounds(tenant, session_id, number),
                             sessions.get_session(tenant, session_id)))
                for record in stored:
                    yield record
                    number = record.number + 1
                if session.state is not SessionState.ACTIVE:
                    yield await asyncio.to_thread(self._view, tenant, session)
                    return
                async for progress in _progress_until_change(events, self._config.stream_poll_seconds):
                    yield progress

    # --- answers ---------------------------------------------------------------------------------

    async def answer(self, caller: Caller, answer: Answer) -> Answered:
        """MORE_PRIVACY / LESS_PRIVACY / SET_EPSILON: the next round; ACCEPT: the release."""
        require_id(answer.session_id, "session_id")
        # Without the caller's request id the work is still keyed, just not deduplicated.
        work_id = answer.request_id or uuid.uuid4().hex
        if answer.kind is FeedbackKind.ACCEPT:
            return await self._accept(caller, answer.session_id, answer.candidate, work_id)
        answered, session, successor = await asyncio.to_thread(self._answered, caller, answer,
                                                               work_id)
        if successor is None:
            assert answered.next_settings is not None  # an answered round plans its successor
            successor = await self._generate(caller, session, answered.number + 1,
                                             answered.next_settings)
        return Answered(await asyncio.to_thread(self._view_of, caller.tenant, answer.session_id),
                        successor)

    def _answered(self, caller: Caller, answer: Answer,
                  work_id: str) -> tuple[RoundRecord, SessionRecord, RoundRecord | None]:
        """The round this answer answered (recorded now unless a first attempt did), the session,
        and the answered round's successor if it exists."""
        tenant, session_id = caller.tenant, answer.session_id
        sessions = self._state.sessions
        answered = sessions.feedback_round(tenant, session_id, work_id)
        if answered is None:
            answered = self._record(caller, answer, work_id)
        successor = sessions.rounds(tenant, session_id, answered.number + 1)
        return (answered, sessions.get_session(tenant, session_id),
                successor[0] if successor else None)

    def _record(self, caller: Caller, answer: Answer, work_id: str) -> RoundRecord:
        tenant, session_id = caller.tenant, answer.session_id
        sessions = self._state.sessions
        session = sessions.get_session(tenant, session_id)
        if session.state is not SessionState.ACTIVE:
            raise FailedPrecondition(f"session {session_id} is {session.state.value}; it takes no "
                                     f"more feedback")
        rounds = sessions.rounds(tenant, session_id)
        latest = require_round_settled(rounds, session_id)
        next_settings = plan_next_round(rounds, answer.kind, self._state.controller,
                                        dict(answer.epsilon or {}) or None)
        answered = sessions.record_feedback(tenant, session_id, latest.number, answer.kind,
                                            next_settings=next_settings, actor=caller.actor,
                                            request_id=work_id)
        FEEDBACK.labels(answer.kind.value).inc()
        return answered

    async def _accept(self, caller: Caller, session_id: str, candidate: int,
                      work_id: str) -> Answered:
        tenant = caller.tenant
        session = await asyncio.to_thread(self._state.sessions.get_session, tenant, session_id)
        models: list[str] = []
        if session.state is SessionState.ACTIVE and self._unlearner is not None:
            models = await self._unlearner.dependent_models(tenant, session.original.sha256)
        try:
            result = await asyncio.to_thread(
                self._state.releases.accept, tenant, session_id, candidate, request_id=work_id,
                release_key=f"releases/{session_id}.{EXTENSIONS[session.original.content_type]}", dependent_models=models,
                actor=caller.actor)
        except BudgetExceeded:
            LEDGER_REFUSALS.inc()
            raise
        if not result.replayed:
            FEEDBACK.labels(FeedbackKind.ACCEPT.value).inc()
            RELEASES.inc()
            RELEASE_EPSILON.observe(result.charge.entry.epsilon)
            SESSION_ROUNDS.observe(result.release.round_number)
            UNLEARNING_REQUESTS.inc(len(result.unlearning_request_ids))
            self._events.publish(session_id, CHANGED)
        if result.release.state is ReleaseState.PENDING:
            # Charged: if this copy fails the call fails, and a retry or the recovery loop
            # publishes it (it is never charged twice).
            await self._publisher.publish(result.release)
        return Answered(await asyncio.to_thread(self._view, tenant, result.session, result), None)


    # --- ending a session, deleting an upload ----------------------------------------------------

    async def close(self, caller: Caller, session_id: str) -> SessionView:
        """End an ACTIVE session without a release and delete its candidates; a CLOSED one is
        answered as it is (its candidates deleted again: a first attempt may have died half-way).
        A round generating meanwhile is refused by the store once the session is closed and
        deletes its own objects (rounds.py)."""
        require_id(session_id, "session_id")
        tenant = caller.tenant

        def end() -> SessionView:
            sessions = self._state.sessions
            session = sessions.get_session(tenant, session_id)
            if session.state is SessionState.ACTIVE:
                with contextlib.suppress(FailedPrecondition):  # ended meanwhile: judged below
                    session = sessions.close_session(tenant, session_id, actor=caller.actor)
                session = sessions.get_session(tenant, session_id)
            if session.state is not SessionState.CLOSED:
                raise FailedPrecondition(f"session {session_id} is {session.state.value}; only an "
                                         f"active session can be closed")
            store = self._store.for_tenant(tenant)
            for info in list(store.list(f"sessions/{session_id}/")):
                store.delete(info.key)
            return self._view(tenant, session)

        view = await asyncio.to_thread(end)
        self._events.publish(session_id, CHANGED)
        return view

    async def delete_upload(self, caller: Caller, ref: ObjectInfo) -> tuple[StoredObject, int]:
        """Delete an uploaded original (by key, or by sha256 when the key is empty) that no ACTIVE
        session uses; returns it and how many ended sessions had used it (marked as having lost
        their original, so retention does not look for it again). The image's subject binding
        stays: re-uploading the same bytes must charge the same subject. A CreateSession racing
        this call may still start on the upload; its round then finds no original and the
        session ends FAILED."""
        tenant = caller.tenant

        def delete() -> tuple[StoredObject, int]:
            store = self._store.for_tenant(tenant)
            key = ref.key or _upload_key(store, ref.sha256)
            if not key.startswith(UPLOADS_PREFIX):
                raise InvalidArgument(f"{quoted(key)} is not an upload (uploads/...)")
            stat = store.stat(key)
            if ref.sha256 and ref.sha256 != stat.sha256:
                raise NotFound(f"upload {quoted(key)} has another sha256 than {ref.sha256}")
            using = self._state.sessions.sessions_on_original(tenant, key)
            if active := using.get(SessionState.ACTIVE, 0):
                raise FailedPrecondition(f"upload {quoted(key)} is used by {active} active "
                                         f"session(s); close them first")
            store.delete(key)
            image = StoredObject(bucket=self._store.bucket, key=key, sha256=stat.sha256,
                                 size=stat.size, content_type=stat.content_type)
            self._state.retention.mark_original_deleted(tenant, key, utcnow(),
                                                        actor=caller.actor)
            self._state.audit.append(AuditRecord(
                tenant=tenant, actor=caller.actor, action=UPLOAD_DELETE, target=key,
                outcome="ok", input_sha256=stat.sha256, detail={"sessions": sum(using.values())}))
            return image, sum(using.values())

        return await asyncio.to_thread(delete)


def _upload_key(store: ObjectStore, sha256: str | None) -> str:
    """The key of the upload with this content hash (uploads/<sha256>.<ext>)."""
    if not sha256:
        raise InvalidArgument("no upload named: give its key or its sha256")
    found = [info.key for info in store.list(f"{UPLOADS_PREFIX}{sha256}.")]
    if not found:
        raise NotFound(f"no upload with sha256 {sha256}")
    return found[0]


async def _progress_until_change(events: asyncio.Queue[common_pb2.Progress | str],
                                 poll_seconds: float) -> AsyncIterator[common_pb2.Progress]:
    """Progress events until a "changed" event or `poll_seconds` without any event."""
    while True:
        try:
            event = await asyncio.wait_for(events.get(), poll_seconds)
        except TimeoutError:
            return
        if not isinstance(event, common_pb2.Progress):
            return
        yield event
