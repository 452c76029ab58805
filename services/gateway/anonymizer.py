"""The gateway's client of the anonymizer: the model's description (cached) and one round of
candidates per call, turned into services.gateway.state records with what each candidate would charge.
A round's settings are sent as the explicit values the gateway resolved (with their level, if
any), so the anonymizer never resolves a level of the gateway's again."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence

import grpc
from google.protobuf.json_format import MessageToDict

from services.gateway.dependencies import NO_ANSWER, CircuitBreaker
from services.gateway.downstream import downstream_error
from services.gateway.metrics import ANONYMIZER_SECONDS
from veil.errors import InvalidArgument, VeilError
from veil.ledger.convert import receipt_spend
from veil.privacy import PrivacySettings
from veil.privacy.convert import settings_to_proto
from veil.rpc import outgoing_metadata
from services.gateway.state import Candidate, RefusedCandidate, StoredObject
from veil.store import object_ref
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc, common_pb2

MODEL_INFO_TTL_SECONDS = 30.0
# GetModelInfo does no work: an anonymizer that does not answer it within seconds is not answering.
MODEL_INFO_TIMEOUT_SECONDS = 5.0

ProgressFn = Callable[[common_pb2.Progress], None]


@dataclasses.dataclass(frozen=True)
class RoundRequest:
    """What one round asks the anonymizer for."""

    tenant: str
    subject_id: str
    original: StoredObject
    protect: Sequence[str]
    settings: PrivacySettings
    candidates: int
    seed: int
    output_prefix: str


@dataclasses.dataclass(frozen=True)
class GeneratedRound:
    """The anonymizer's answer to one round: the offered candidates and the refused ones."""

    offered: list[Candidate]
    refused: list[RefusedCandidate]


def _faces_json(event: anonymizer_pb2.Candidate) -> tuple[dict, ...]:
    return tuple(MessageToDict(face, preserving_proto_field_name=True) for face in event.faces)


def to_refused(event: anonymizer_pb2.Candidate) -> RefusedCandidate:
    return RefusedCandidate(index=event.candidate_index, reason=event.refusal, faces=_faces_json(event))


def to_candidate(event: anonymizer_pb2.Candidate) -> Candidate:
    """The candidate with what accepting it charges: every anonymized face of the photo (kept and
    obscured faces release nothing through the model). InvalidArgument when no face was anonymized:
    such a photo releases nothing the ledger could account for, so the session cannot go on."""
    anonymized = [face.receipt for face in event.faces if face.action == common_pb2.FACE_ACTION_ANONYMIZED]
    if not anonymized:
        raise InvalidArgument(f"the photo has no face to anonymize ({len(event.faces)} found, none of them "
                              "re-synthesized); a session needs at least one")
    ref = event.image.object
    try:
        image = StoredObject(bucket=ref.bucket, key=ref.key, sha256=ref.sha256, size=ref.size,
                             content_type=ref.content_type or "image/png",
                             width=event.image.width, height=event.image.height)
        spends = [receipt_spend(receipt) for receipt in anonymized]
    except InvalidArgument as exc:
        # The caller's request was fine; what came back is not chargeable.
        raise VeilError(f"anonymizer returned a candidate the ledger cannot charge: {exc}") from None
    first = spends[0]
    if any((s.attributes, s.identity) != (first.attributes, first.identity) for s in spends):
        raise VeilError("anonymizer returned faces of one candidate released at different settings")
    spend = dataclasses.replace(first, faces=len(spends))
    return Candidate(index=event.candidate_index, image=image, spend=spend,
                     model_version=event.receipt.model_version,
                     receipt=MessageToDict(event.receipt, preserving_proto_field_name=True),
                     faces=_faces_json(event))


class AnonymizerClient:
    """Calls pass `breaker` (services.gateway.dependencies): while the anonymizer is down they
    fail at once with UNAVAILABLE instead of waiting for their deadline."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float, breaker: CircuitBreaker) -> None:
        self._stub = anonymizer_pb2_grpc.AnonymizerStub(channel)
        self._timeout = timeout_seconds
        self._breaker = breaker
        self._info: anonymizer_pb2.ModelInfo | None = None
        self._info_at = 0.0
        self._info_lock = asyncio.Lock()

    async def model_info(self) -> anonymizer_pb2.ModelInfo:
        """The loaded model's description, cached for MODEL_INFO_TTL_SECONDS (a rollout of a new
        model version shows within that)."""
        async with self._info_lock:
            if self._info is None or time.monotonic() - self._info_at > MODEL_INFO_TTL_SECONDS:
                self._breaker.admit()
                try:
                    self._info = await self._stub.GetModelInfo(
                        anonymizer_pb2.GetModelInfoRequest(),
                        timeout=min(self._timeout, MODEL_INFO_TIMEOUT_SECONDS), metadata=outgoing_metadata())
                except grpc.aio.AioRpcError as exc:
                    raise self._failed(exc) from None
                self._breaker.succeeded()
                self._info_at = time.monotonic()
            return self._info

    async def generate(self, request: RoundRequest, on_progress: ProgressFn) -> GeneratedRound:
        """The round's candidates, offered and refused, each in index order; progress events go
        to `on_progress`."""
        message = anonymizer_pb2.AnonymizeRequest(
            images=[object_ref(request.original)],
            protect=list(request.protect), privacy=settings_to_proto(request.settings),
            candidates=request.candidates, seed=request.seed, output_prefix=request.output_prefix,
            subject_id=request.subject_id)
        self._breaker.admit()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        offered: list[Candidate] = []
        refused: list[RefusedCandidate] = []
        try:
            events = self._stub.Anonymize(message, timeout=self._timeout,
                                          metadata=outgoing_metadata(request.tenant))
            async for event in events:
                if event.HasField("candidate") and event.candidate.refusal:
                    refused.append(to_refused(event.candidate))
                elif event.HasField("candidate"):
                    offered.append(to_candidate(event.candidate))
                elif event.HasField("progress"):
                    on_progress(event.progress)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise self._failed(exc) from None
        finally:
            ANONYMIZER_SECONDS.labels(code.name).observe(time.perf_counter() - started)
        self._breaker.succeeded()
        offered.sort(key=lambda c: c.index)
        refused.sort(key=lambda r: r.index)
        indices = sorted([c.index for c in offered] + [r.index for r in refused])
        if indices != list(range(request.candidates)):
            raise VeilError(f"anonymizer returned candidates {indices}, expected 0..{request.candidates - 1}")
        return GeneratedRound(offered, refused)

    def _failed(self, exc: grpc.aio.AioRpcError) -> VeilError:
        """The call's error, after telling the breaker whether the anonymizer answered."""
        if exc.code() in NO_ANSWER:
            self._breaker.failed(f"a call failed with {exc.code().name}")
        else:
            self._breaker.succeeded()  # it answered, if only to refuse
        return downstream_error("anonymizer", exc)
