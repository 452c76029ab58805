"""veil.v1.Gateway: the RPCs. Each converts its messages (convert.py) and delegates to the
session workflow (workflow.py); request ids make CreateSession, Feedback and UploadImage
idempotent (idempotency.py). Every call is authenticated (auth.py) and works in the caller's
tenant; errors are veil.errors types, mapped to status codes by veil.rpc's interceptor.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from services.gateway import convert
from services.gateway.auth import current_caller
from services.gateway.idempotency import ResponseOnce, fingerprint
from services.gateway.uploads import receive_upload
from services.gateway.workflow import SessionView, SessionWorkflow, Upload
from veil.errors import InvalidArgument
from veil.store import from_object_ref
from veil.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, workflow: SessionWorkflow, once: ResponseOnce, max_upload_bytes: int) -> None:
        self._workflow = workflow
        self._once = once
        self._max_upload_bytes = max_upload_bytes

    async def UploadImage(self, request_iterator: AsyncIterator[gateway_pb2.UploadImageRequest],
                          context: grpc.aio.ServicerContext) -> common_pb2.ImageRef:
        caller = current_caller()
        header, data = await receive_upload(request_iterator, self._max_upload_bytes)
        upload = Upload.received(data, header.content_type, header.subject_id, header.sha256)

        async def store() -> common_pb2.ImageRef:
            image = await self._workflow.upload(caller, upload)
            return convert.image_ref(image, self._workflow.url_for(caller.tenant))

        return await self._once.run(caller.tenant, header.request_id, "UploadImage",
                                    fingerprint(header, upload.sha256.encode()),
                                    common_pb2.ImageRef, store)

    async def CreateSession(self, request: gateway_pb2.CreateSessionRequest,
                            context: grpc.aio.ServicerContext) -> gateway_pb2.Session:
        caller = current_caller()

        async def create() -> gateway_pb2.Session:
            view = await self._workflow.create(caller, convert.new_session(request,
                                                                           self._workflow.bucket))
            return convert.session_message(view, self._workflow.url_for(caller.tenant))

        return await self._once.run(caller.tenant, request.request_id, "CreateSession",
                                    fingerprint(request), gateway_pb2.Session, create)

    async def GetSession(self, request: gateway_pb2.GetSessionRequest,
                         context: grpc.aio.ServicerContext) -> gateway_pb2.Session:
        tenant = current_caller().tenant
        view = await self._workflow.session(tenant, request.session_id)
        return convert.session_message(view, self._workflow.url_for(tenant))

    async def ListSessions(self, request: gateway_pb2.ListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> gateway_pb2.ListSessionsResponse:
        """Newest first; each session without its rounds (GetSession has them)."""
        tenant = current_caller().tenant
        page, token = await self._workflow.sessions(tenant, request.subject_id, request.page_size,
                                                    request.page_token)
        url_for = self._workflow.url_for(tenant)
        return gateway_pb2.ListSessionsResponse(
            sessions=[convert.session_message(SessionView(s, None), url_for) for s in page],
            next_page_token=token)

    async def GetLedger(self, request: gateway_pb2.GetLedgerRequest,
                        context: grpc.aio.ServicerContext) -> gateway_pb2.Ledger:
        summary, entries = await self._workflow.ledger(current_caller().tenant, request.subject_id)
        return convert.ledger_message(summary.subject_id, summary, entries)

    async def StreamRounds(self, request: gateway_pb2.StreamRoundsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.RoundEvent]:
        tenant = current_caller().tenant
        url_for = self._workflow.url_for(tenant)
        events = self._workflow.round_events(tenant, request.session_id, request.from_round)
        async with contextlib.aclosing(events):
            async for event in events:
                yield convert.round_event(event, url_for)

    async def Feedback(self, request: gateway_pb2.FeedbackRequest,
                       context: grpc.aio.ServicerContext) -> gateway_pb2.FeedbackResponse:
        caller = current_caller()
        answer = convert.answer(request)

        async def respond() -> gateway_pb2.FeedbackResponse:
            answered = await self._workflow.answer(caller, answer)
            return convert.feedback_response(answered, self._workflow.url_for(caller.tenant))

        return await self._once.run(caller.tenant, request.request_id, "Feedback",
                                    fingerprint(request), gateway_pb2.FeedbackResponse, respond)

    async def Download(self, request: gateway_pb2.DownloadRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[common_pb2.Chunk]:
        if not request.HasField("object") or not request.object.key:
            raise InvalidArgument("no object to download")
        ref = from_object_ref(request.object, self._workflow.bucket)
        chunks = self._workflow.download(current_caller(), ref)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield common_pb2.Chunk(data=chunk)

    async def CloseSession(self, request: gateway_pb2.CloseSessionRequest,
                           context: grpc.aio.ServicerContext) -> gateway_pb2.Session:
        caller = current_caller()

        async def close() -> gateway_pb2.Session:
            view = await self._workflow.close(caller, request.session_id)
            return convert.session_message(view, self._workflow.url_for(caller.tenant))

        return await self._once.run(caller.tenant, request.request_id, "CloseSession",
                                    fingerprint(request), gateway_pb2.Session, close)

    async def DeleteUpload(self, request: gateway_pb2.DeleteUploadRequest,
                           context: grpc.aio.ServicerContext) -> gateway_pb2.DeleteUploadResponse:
        caller = current_caller()
        ref = convert.upload_ref(request, self._workflow.bucket)

        async def delete() -> gateway_pb2.DeleteUploadResponse:
            image, sessions = await self._workflow.delete_upload(caller, ref)
            return convert.delete_upload_response(image, sessions)

        return await self._once.run(caller.tenant, request.request_id, "DeleteUpload",
                                    fingerprint(request), gateway_pb2.DeleteUploadResponse, delete)
