"""Request ids of the gateway's RPCs (UploadHeader.request_id, CreateSessionRequest.request_id,
FeedbackRequest.request_id): a repeated id returns the first response, byte for byte, across
replicas (it is kept in SQL: services.gateway.state.idempotency); the same id for a different request is
INVALID_ARGUMENT; while the first call still runs, ABORTED (retry later). The running call
renews its claim; a claim its replica stopped renewing (it died) is taken over once
VEIL_IDEMPOTENCY_LEASE_SECONDS pass, so a retry proceeds within seconds. Without a request id a
call is not deduplicated."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message

from services.gateway.heartbeat import heartbeat
from services.gateway.state import IdempotencyStore, Replay

M = TypeVar("M", bound=Message)


def fingerprint(message: Message, extra: bytes = b"") -> str:
    """sha256 of a request without its request id (what a repeated id must match)."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True) + extra).hexdigest()


class ResponseOnce:
    """Runs an RPC's work once per (tenant, request id) and replays its response."""

    def __init__(self, keys: IdempotencyStore) -> None:
        self._keys = keys

    async def run(self, tenant: str, request_id: str, method: str, request_sha256: str,
                  response_type: type[M], work: Callable[[], Awaitable[M]]) -> M:
        if not request_id:
            return await work()
        claim = await asyncio.to_thread(self._keys.claim, tenant, request_id, method,
                                        request_sha256)
        if isinstance(claim, Replay):
            return response_type.FromString(claim.response)
        try:
            async with heartbeat(lambda: self._keys.renew(claim),
                                 self._keys.config.lease_seconds / 3, f"request {request_id}"):
                response = await work()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._keys.abandon, claim))
            raise
        await asyncio.to_thread(self._keys.complete, claim, response.SerializeToString())
        return response
