"""The gateway's client of the unlearner: which models were trained on an original, submitting a
batch of replacements, and the state of the job it became. Calls carry the tenant (models and
object keys are the tenant's)."""

from __future__ import annotations

import grpc

from services.gateway.downstream import downstream_error
from services.gateway.state import UnlearningBatch
from veil.rpc import outgoing_metadata
from veil.store import object_ref
from veil.unlearning.method_names import method_to_proto
from veil.v1 import unlearner_pb2, unlearner_pb2_grpc


class UnlearnerClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float, method: str) -> None:
        self._stub = unlearner_pb2_grpc.UnlearnerStub(channel)
        self._timeout = timeout_seconds
        self._method = method_to_proto(method)

    async def dependent_models(self, tenant: str, sha256: str) -> list[str]:
        """Names of the tenant's models trained on the object with this content."""
        try:
            response = await self._stub.ListDependentModels(
                unlearner_pb2.ListDependentModelsRequest(sha256=[sha256]), timeout=self._timeout,
                metadata=outgoing_metadata(tenant))
        except grpc.aio.AioRpcError as exc:
            raise downstream_error("unlearner", exc) from None
        return sorted({version.model for version in response.versions})

    async def submit(self, batch: UnlearningBatch) -> unlearner_pb2.Job:
        """One Unlearn request for the whole batch, its id the batch id (so a resubmission after a
        crash is the same job)."""
        request = unlearner_pb2.UnlearnRequest(
            request_id=batch.batch_id, model=batch.model, method=self._method,
            pairs=[unlearner_pb2.ReplacementPair(original=object_ref(r.original),
                                                 replacement=object_ref(r.protected),
                                                 session_id=r.session_id)
                   for r in batch.requests])
        try:
            return await self._stub.Unlearn(request, timeout=self._timeout,
                                            metadata=outgoing_metadata(batch.tenant))
        except grpc.aio.AioRpcError as exc:
            raise downstream_error("unlearner", exc) from None

    async def job(self, tenant: str, job_id: str) -> unlearner_pb2.Job:
        try:
            return await self._stub.GetJob(unlearner_pb2.GetJobRequest(job_id=job_id),
                                           timeout=self._timeout, metadata=outgoing_metadata(tenant))
        except grpc.aio.AioRpcError as exc:
            raise downstream_error("unlearner", exc) from None
