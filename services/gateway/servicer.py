"""veil.v1.Gateway: the RPCs, a thin layer over veil.sessions (state), the anonymizer (rounds),
the unlearner (dependent models) and the object store.

Every call is authenticated (services.gateway.auth) and works in the caller's tenant only:
another tenant's session, ledger or object is NOT_FOUND, exactly like a missing one.

Request ids (UploadHeader.request_id, CreateSessionRequest.request_id, FeedbackRequest.request_id)
make a call idempotent across replicas: a repeated id returns the first result (the response is
kept in SQL); the same id for a different request is INVALID_ARGUMENT; while the first call still
runs, ABORTED (retry later). The work itself is idempotent too: a retry whose first attempt died
half-way finds the session or the feedback it committed (by request id) and finishes it (so a
retried CreateSession whose first attempt failed on its input returns that FAILED session).
Without a request id a call is not deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from services.gateway import convert
from services.gateway.anonymizer import AnonymizerClient
from services.gateway.auth import Caller, current_caller
from services.gateway.config import GatewayConfig
from services.gateway.downstream import input_refused
from services.gateway.events import CHANGED, SessionEvents
from services.gateway.metrics import (FEEDBACK, LEDGER_REFUSALS, RELEASE_EPSILON, RELEASES,
                                      SESSION_ROUNDS, SESSIONS_CREATED, UNLEARNING_REQUESTS)
from services.gateway.privacy import candidates_per_round, initial_settings, protected_attributes
from services.gateway.releases import ReleasePublisher
from services.gateway.rounds import RoundGenerator, end_failed_session, require_round_settled
from services.gateway.unlearner import UnlearnerClient
from services.gateway.uploads import receive_upload, stored_image
from veil.errors import DataLoss, FailedPrecondition, InvalidArgument, VeilError
from veil.images import decode_image
from veil.ledger import BudgetExceeded
from veil.sessions import (
    AuditRecord,
    FeedbackKind,
    GatewayState,
    ReleaseState,
    Replay,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
    plan_next_round,
)
from veil.sessions.audit import IMAGE_UPLOAD
from veil.sessions.models import require_id
from veil.store import ObjectStore, from_object_ref
from veil.store.base import CHUNK_SIZE
from veil.v1 import anonymizer_pb2, common_pb2, gateway_pb2, gateway_pb2_grpc

M = TypeVar("M", bound=Message)
DEFAULT_PAGE_SIZE = 50


def fingerprint(message: Message, extra: bytes = b"") -> str:
    """sha256 of a request without its request id (what a repeated id must match)."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True) + extra).hexdigest()


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
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

    # --- helpers ---------------------------------------------------------------------------------

    def _url_for(self, tenant: str) -> convert.UrlFor:
        store = self._store.for_tenant(tenant)
        expires = timedelta(seconds=self._config.presigned_url_seconds)
        return lambda obj: store.presigned_get_url(obj.key, expires) or ""

    async def _idempotent(self, caller: Caller, request_id: str, method: str, request_sha256: str,
                          parse: Callable[[bytes], M], work: Callable[[], Awaitable[M]]) -> M:
        """Run `work` once per request id (see the module docstring)."""
        if not request_id:
            return await work()
        keys = self._state.idempotency
        claim = await asyncio.to_thread(keys.claim, caller.tenant, request_id, method,
                                        request_sha256)
        if isinstance(claim, Replay):
            return parse(claim.response)
        try:
            response = await work()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(keys.abandon, claim))
            raise
        await asyncio.to_thread(keys.complete, claim, response.SerializeToString())
        return response

    async def _session_message(self, tenant: str, session: SessionRecord) -> gateway_pb2.Session:
        url_for = self._url_for(tenant)
        sessions = self._state.sessions
        latest = await asyncio.to_thread(sessions.latest_round, tenant, session.session_id)
        release = None
        if session.state is SessionState.ACCEPTED:
            result = await asyncio.to_thread(self._state.releases.accepted, tenant,
                                             session.session_id)
            [accepted] = await asyncio.to_thread(sessions.rounds, tenant, session.session_id,
                                                 result.release.round_number)
            release = convert.release_message(result, accepted, url_for)
        return convert.session_message(session, latest, release, url_for)

    async def _audit(self, record: AuditRecord) -> None:
        await asyncio.to_thread(self._state.audit.append, record)

    # --- UploadImage -----------------------------------------------------------------------------

    async def UploadImage(self, request_iterator: AsyncIterator[gateway_pb2.UploadImageRequest],
                          context: grpc.aio.ServicerContext) -> common_pb2.ImageRef:
        caller = current_caller()
        header, data = await receive_upload(request_iterator, self._config.max_upload_bytes)
        sha256 = hashlib.sha256(data).hexdigest()
        if header.sha256 and header.sha256 != sha256:
            raise DataLoss(f"upload: received content has sha256 {sha256}, declared {header.sha256}")
        return await self._idempotent(
            caller, header.request_id, "UploadImage", fingerprint(header, sha256.encode()),
            common_pb2.ImageRef.FromString, lambda: self._store_upload(caller, header, data, sha256))

    async def _store_upload(self, caller: Caller, header: common_pb2.UploadHeader, data: bytes,
                            sha256: str) -> common_pb2.ImageRef:
        pixels = await asyncio.to_thread(decode_image, data, None, header.content_type, "upload")
        image = await asyncio.to_thread(stored_image, self._store.for_tenant(caller.tenant), data,
                                        header.content_type, sha256, pixels.shape)
        await self._audit(AuditRecord(
            tenant=caller.tenant, actor=caller.actor, action=IMAGE_UPLOAD, target=image.key,
            outcome="ok", input_sha256=sha256,
            detail={"size": image.size, "width": image.width, "height": image.height,
                    "subject_id": header.subject_id[:256]}))
        return convert.image_ref(image, self._url_for(caller.tenant))

    # --- CreateSession ---------------------------------------------------------------------------

    async def CreateSession(self, request: gateway_pb2.CreateSessionRequest,
                            context: grpc.aio.ServicerContext) -> gateway_pb2.Session:
        caller = current_caller()
        return await self._idempotent(caller, request.request_id, "CreateSession",
                                      fingerprint(request), gateway_pb2.Session.FromString,
                                      lambda: self._create_session(caller, request))

    async def _create_session(self, caller: Caller,
                              request: gateway_pb2.CreateSessionRequest) -> gateway_pb2.Session:
        tenant = caller.tenant
        if request.request_id:
            earlier = await asyncio.to_thread(self._state.sessions.session_for_request, tenant,
                                              request.request_id)
            if earlier is not None:  # a retry whose first attempt died after creating it
                return await self._with_first_round(caller, earlier)
        subject_id = require_id(request.subject_id, "subject_id", 256)
        info = await self._anonymizer.model_info()
        protect = protected_attributes(list(request.protect), info)
        settings = initial_settings(request.privacy if request.HasField("privacy") else None,
                                    protect, info, self._state.controller)
        candidates = candidates_per_round(request.candidates, info)
        original = await self._original(tenant, request, info)
        session = await asyncio.to_thread(
            self._state.sessions.create_session, tenant, subject_id, original=original,
            protect=protect, settings=settings, candidates_per_round=candidates,
            seed=request.seed or secrets.randbits(64) or 1, actor=caller.actor,
            request_id=request.request_id or None)
        SESSIONS_CREATED.inc()
        return await self._with_first_round(caller, session)

    async def _original(self, tenant: str, request: gateway_pb2.CreateSessionRequest,
                        info: anonymizer_pb2.ModelInfo) -> StoredObject:
        """The session's image: the tenant's object, readable, matching its ref and the model."""
        if not request.HasField("image") or not request.image.key:
            raise InvalidArgument("no image: upload one with UploadImage and pass its ref")
        ref = from_object_ref(request.image, self._store.bucket)
        store = self._store.for_tenant(tenant)
        stat = await asyncio.to_thread(store.stat, ref.key)
        if stat.size > self._config.max_upload_bytes:
            raise InvalidArgument(f"image {ref.key!r} has {stat.size} bytes; at most "
                                  f"{self._config.max_upload_bytes} (VEIL_MAX_UPLOAD_BYTES)")
        data = await asyncio.to_thread(store.get, ref.key, expected_sha256=ref.sha256)
        sha256 = hashlib.sha256(data).hexdigest()
        pixels = await asyncio.to_thread(decode_image, data, None, stat.content_type,
                                         f"image {ref.key!r}")
        height, width = pixels.shape[:2]
        if info.image_size and (width, height) != (info.image_size, info.image_size):
            raise InvalidArgument(f"image {ref.key!r} is {width}x{height}; the model "
                                  f"({info.model_version}) takes {info.image_size}x{info.image_size}")
        return StoredObject(bucket=self._store.bucket, key=ref.key, sha256=sha256, size=len(data),
                            content_type=stat.content_type, width=width, height=height)

    async def _with_first_round(self, caller: Caller, session: SessionRecord) -> gateway_pb2.Session:
        if session.state is SessionState.ACTIVE and session.round_count == 0:
            try:
                await self._rounds.generate(session, 1, session.settings, caller.actor)
            except VeilError as exc:
                if input_refused(exc):
                    await end_failed_session(self._state, session, caller.actor, exc)
                raise
        session = await asyncio.to_thread(self._state.sessions.get_session, caller.tenant,
                                          session.session_id)
        return await self._session_message(caller.tenant, session)

    # --- reads -----------------------------------------------------------------------------------

    async def GetSession(self, request: gateway_pb2.GetSessionRequest,
                         context: grpc.aio.ServicerContext) -> gateway_pb2.Session:
        tenant = current_caller().tenant
        session = await asyncio.to_thread(self._state.sessions.get_session, tenant,
                                          require_id(request.session_id, "session_id"))
        return await self._session_message(tenant, session)

    async def ListSessions(self, request: gateway_pb2.ListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> gateway_pb2.ListSessionsResponse:
        """Newest first; each session without its rounds (GetSession has them)."""
        tenant = current_caller().tenant
        page, token = await asyncio.to_thread(
            self._state.sessions.list_sessions, tenant, subject_id=request.subject_id or None,
            page_size=request.page_size or DEFAULT_PAGE_SIZE, page_token=request.page_token)
        url_for = self._url_for(tenant)
        return gateway_pb2.ListSessionsResponse(
            sessions=[convert.session_message(s, None, None, url_for) for s in page],
            next_page_token=token)

    async def GetLedger(self, request: gateway_pb2.GetLedgerRequest,
                        context: grpc.aio.ServicerContext) -> gateway_pb2.Ledger:
        tenant = current_caller().tenant
        subject_id = require_id(request.subject_id, "subject_id", 256)
        summary = await asyncio.to_thread(self._state.ledger.summary, tenant, subject_id)
        entries = await asyncio.to_thread(self._state.ledger.entries, tenant, subject_id)
        return convert.ledger_message(subject_id, summary, entries)

    async def StreamRounds(self, request: gateway_pb2.StreamRoundsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.RoundEvent]:
        tenant = current_caller().tenant
        session_id = require_id(request.session_id, "session_id")
        if request.from_round < 0:
            raise InvalidArgument(f"from_round must be >= 0, got {request.from_round}")
        sessions = self._state.sessions
        await asyncio.to_thread(sessions.get_session, tenant, session_id)
        url_for = self._url_for(tenant)
        number = max(1, request.from_round)
        with self._events.subscribe(session_id) as events:
            while True:
                for record in await asyncio.to_thread(sessions.rounds, tenant, session_id, number):
                    yield gateway_pb2.RoundEvent(round=convert.round_message(record, url_for))
                    number = record.number + 1
                session = await asyncio.to_thread(sessions.get_session, tenant, session_id)
                if session.state is not SessionState.ACTIVE:
                    ended = await self._session_message(tenant, session)
                    yield gateway_pb2.RoundEvent(session_ended=ended)
                    return
                async for progress in _progress_until_change(events, self._config.stream_poll_seconds):
                    yield gateway_pb2.RoundEvent(progress=progress)

    # --- Feedback --------------------------------------------------------------------------------

    async def Feedback(self, request: gateway_pb2.FeedbackRequest,
                       context: grpc.aio.ServicerContext) -> gateway_pb2.FeedbackResponse:
        caller = current_caller()
        kind = convert.FEEDBACK_FROM_PROTO.get(request.kind)
        if kind is None:
            raise InvalidArgument("feedback kind must be MORE_PRIVACY, LESS_PRIVACY, ACCEPT or "
                                  "SET_EPSILON")
        require_id(request.session_id, "session_id")
        # Without the caller's request id the work is still keyed, just not deduplicated.
        work_id = request.request_id or uuid.uuid4().hex
        return await self._idempotent(
            caller, request.request_id, "Feedback", fingerprint(request),
            gateway_pb2.FeedbackResponse.FromString,
            lambda: self._feedback(caller, request, kind, work_id))

    async def _feedback(self, caller: Caller, request: gateway_pb2.FeedbackRequest,
                        kind: FeedbackKind, work_id: str) -> gateway_pb2.FeedbackResponse:
        tenant, session_id = caller.tenant, request.session_id
        if kind is FeedbackKind.ACCEPT:
            return await self._accept(caller, session_id, request.candidate, work_id)
        sessions = self._state.sessions
        answered = await asyncio.to_thread(sessions.feedback_round, tenant, session_id, work_id)
        if answered is None:
            answered = await self._record_feedback(caller, request, kind, work_id)
        session = await asyncio.to_thread(sessions.get_session, tenant, session_id)
        successor = await asyncio.to_thread(sessions.rounds, tenant, session_id, answered.number + 1)
        if successor:
            record = successor[0]
        else:
            record = await self._next_round(caller, session, answered)
            session = await asyncio.to_thread(sessions.get_session, tenant, session_id)
        return gateway_pb2.FeedbackResponse(
            session=await self._session_message(tenant, session),
            round=convert.round_message(record, self._url_for(tenant)))

    async def _record_feedback(self, caller: Caller, request: gateway_pb2.FeedbackRequest,
                               kind: FeedbackKind, work_id: str) -> RoundRecord:
        tenant, session_id = caller.tenant, request.session_id
        sessions = self._state.sessions
        session = await asyncio.to_thread(sessions.get_session, tenant, session_id)
        if session.state is not SessionState.ACTIVE:
            raise FailedPrecondition(f"session {session_id} is {session.state.value}; it takes no "
                                     f"more feedback")
        rounds = await asyncio.to_thread(sessions.rounds, tenant, session_id)
        latest = require_round_settled(rounds, session_id)
        next_settings = plan_next_round(rounds, kind, self._state.controller,
                                        dict(request.epsilon) or None)
        answered = await asyncio.to_thread(
            sessions.record_feedback, tenant, session_id, latest.number, kind,
            next_settings=next_settings, actor=caller.actor, request_id=work_id)
        FEEDBACK.labels(kind.value).inc()
        return answered

    async def _next_round(self, caller: Caller, session: SessionRecord,
                          answered: RoundRecord) -> RoundRecord:
        try:
            return await self._rounds.generate(session, answered.number + 1,
                                               answered.next_settings, caller.actor)
        except VeilError as exc:
            if input_refused(exc):
                await end_failed_session(self._state, session, caller.actor, exc)
            raise

    async def _accept(self, caller: Caller, session_id: str, candidate: int,
                      work_id: str) -> gateway_pb2.FeedbackResponse:
        tenant = caller.tenant
        session = await asyncio.to_thread(self._state.sessions.get_session, tenant, session_id)
        models: list[str] = []
        if session.state is SessionState.ACTIVE and self._unlearner is not None:
            models = await self._unlearner.dependent_models(tenant, session.original.sha256)
        try:
            result = await asyncio.to_thread(
                self._state.releases.accept, tenant, session_id, candidate, request_id=work_id,
                release_key=f"releases/{session_id}.png", dependent_models=models,
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
        [accepted] = await asyncio.to_thread(self._state.sessions.rounds, tenant, session_id,
                                             result.release.round_number)
        url_for = self._url_for(tenant)
        release = convert.release_message(result, accepted, url_for)
        latest = await asyncio.to_thread(self._state.sessions.latest_round, tenant, session_id)
        return gateway_pb2.FeedbackResponse(
            session=convert.session_message(result.session, latest, release, url_for),
            release=release)

    # --- Download --------------------------------------------------------------------------------

    async def Download(self, request: gateway_pb2.DownloadRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[common_pb2.Chunk]:
        caller = current_caller()
        if not request.HasField("object") or not request.object.key:
            raise InvalidArgument("no object to download")
        ref = from_object_ref(request.object, self._store.bucket)
        store = self._store.for_tenant(caller.tenant)
        chunks = await asyncio.to_thread(store.iter_chunks, ref.key, expected_sha256=ref.sha256,
                                         chunk_size=CHUNK_SIZE)
        try:
            await self._audit(AuditRecord(tenant=caller.tenant, actor=caller.actor,
                                          action="object.download", target=ref.key[:256],
                                          outcome="ok", input_sha256=ref.sha256))
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield common_pb2.Chunk(data=chunk)
        finally:
            # Release the file or HTTP response at once, also when the caller went away (a read
            # still running in its thread when the call was cancelled is left to the collector).
            with contextlib.suppress(ValueError):
                getattr(chunks, "close", lambda: None)()


async def _progress_until_change(events: asyncio.Queue[Any],
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
