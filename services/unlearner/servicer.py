"""The Unlearner gRPC servicer: the model registry, Train / Unlearn jobs and Evaluate, over
veil.unlearning. RPC contract and error codes: protos/veil/v1/unlearner.proto.

Every call acts for the tenant of its `x-veil-tenant` metadata: models live in the tenant's view
of the object store (models/<model>/<version>/...), object keys in requests are relative to it,
and jobs are the tenant's. Train and Unlearn check their request as far as can be done quickly
(the model version, the manifest, every pair's images) and answer INVALID_ARGUMENT / NOT_FOUND
before a job exists; the work then runs in the job runner (jobs.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from services.unlearner.config import UnlearnerConfig
from services.unlearner.jobs import JobRunner
from services.unlearner.jobstore import JobKind, JobRecord, JobStore, NewJob
from services.unlearner.convert import job_message, replacement_pairs, unlearn_params, version_message
from services.unlearner.specs import TrainSpec, UnlearnSpec
from veil.errors import InvalidArgument, NotFound, quoted
from veil.rpc import tenant_id
from veil.rpc.context import accepted_request_id
from veil.store import ObjectStore, from_object_ref
from veil.store.keys import validate_sha256
from veil.unlearning import workflow
from veil.unlearning.method_names import method_from_proto
from veil.unlearning.params import MAX_DIGESTS, TrainConfig
from veil.unlearning.registry import PublishedModelCard, ModelRegistry, validate_model_name
from veil.v1 import unlearner_pb2, unlearner_pb2_grpc


def _lineages(cards: list[PublishedModelCard]) -> dict[tuple[str, str], list[str]]:
    """Root-to-version chains of every listed card, from the listed cards' parents."""
    by_version = {(c.model, c.version): c for c in cards}
    chains = {}
    for card in cards:
        chain, current = [], card
        while current is not None:
            chain.append(current.version)
            current = by_version.get((card.model, current.parent)) if current.parent else None
        chains[(card.model, card.version)] = chain[::-1]
    return chains


def _request_id(given: str) -> str:
    """The caller's idempotency key; without one, the request is its own."""
    if not given:
        return uuid.uuid4().hex
    if accepted_request_id(given) != given:
        raise InvalidArgument(f"request id {quoted(given)} is invalid: use 1-128 of A-Z a-z 0-9 . _ : -")
    return given


class UnlearnerServicer(unlearner_pb2_grpc.UnlearnerServicer):
    def __init__(self, store: ObjectStore, jobs: JobStore, runner: JobRunner,
                 config: UnlearnerConfig) -> None:
        self._store = store
        self._jobs = jobs
        self._runner = runner
        self._config = config

    def _registry(self, context: grpc.aio.ServicerContext) -> ModelRegistry:
        return ModelRegistry(self._store.for_tenant(tenant_id(context)))

    # --- the registry ----------------------------------------------------------------------------

    async def ListModels(self, request: unlearner_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> unlearner_pb2.ListModelsResponse:
        registry = self._registry(context)
        cards = await asyncio.to_thread(registry.list, request.model or None)
        chains = _lineages(cards)
        return unlearner_pb2.ListModelsResponse(
            versions=[version_message(c, chains[(c.model, c.version)]) for c in cards])

    async def GetModel(self, request: unlearner_pb2.GetModelRequest,
                       context: grpc.aio.ServicerContext) -> unlearner_pb2.ModelVersion:
        registry = self._registry(context)

        def read() -> unlearner_pb2.ModelVersion:
            card = registry.card(request.model, request.version or None)
            return version_message(card, registry.lineage(card.model, card.version))

        return await asyncio.to_thread(read)

    async def ListDependentModels(self, request: unlearner_pb2.ListDependentModelsRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> unlearner_pb2.ListDependentModelsResponse:
        if not request.sha256:
            raise InvalidArgument("name at least one sha256")
        if len(request.sha256) > MAX_DIGESTS:
            raise InvalidArgument(f"name at most {MAX_DIGESTS} sha256 digests, got {len(request.sha256)}")
        wanted = {validate_sha256(digest) for digest in request.sha256}
        registry = self._registry(context)

        def read() -> list[unlearner_pb2.ModelVersion]:
            return [version_message(card, registry.lineage(card.model, card.version))
                    for card in registry.dependents(wanted)]

        return unlearner_pb2.ListDependentModelsResponse(versions=await asyncio.to_thread(read))

    # --- jobs ------------------------------------------------------------------------------------

    async def Train(self, request: unlearner_pb2.TrainRequest,
                    context: grpc.aio.ServicerContext) -> unlearner_pb2.Job:
        tenant, request_id = tenant_id(context), _request_id(request.request_id)
        existing = await self._existing(tenant, request_id, JobKind.TRAIN)
        if existing is not None:
            return existing
        model = validate_model_name(request.model)
        if not request.HasField("manifest") or not request.manifest.key:
            raise InvalidArgument("no manifest: name the dataset manifest's object")
        manifest = from_object_ref(request.manifest, self._store.bucket)
        defaults = TrainConfig()
        spec = TrainSpec(manifest_key=manifest.key, manifest_sha256=manifest.sha256,
                         config=TrainConfig(seed=request.seed, epochs=request.epochs or defaults.epochs),
                         channels=self._config.channels,
                         embedding_dim=self._config.classifier_embedding_dim)
        await asyncio.to_thread(workflow.check_train, self._store.for_tenant(tenant),
                                manifest_key=spec.manifest_key, manifest_sha256=spec.manifest_sha256,
                                channels=spec.channels, embedding_dim=spec.embedding_dim)
        return await self._submit(tenant, request_id, NewJob(JobKind.TRAIN, model, spec.to_json()))

    async def Unlearn(self, request: unlearner_pb2.UnlearnRequest,
                      context: grpc.aio.ServicerContext) -> unlearner_pb2.Job:
        tenant, request_id = tenant_id(context), _request_id(request.request_id)
        # A repeated request returns its job before anything is checked again: by then the
        # gateway may have deleted the originals the job has already replaced.
        existing = await self._existing(tenant, request_id, JobKind.UNLEARN)
        if existing is not None:
            return existing
        model = validate_model_name(request.model)
        method = method_from_proto(request.method, self._config.default_method)
        spec = UnlearnSpec(replacement_pairs(request.pairs, self._store.bucket),
                           unlearn_params(request.params))
        registry = ModelRegistry(self._store.for_tenant(tenant))
        await asyncio.to_thread(workflow.check_unlearn, registry, model=model,
                                version=request.version or None, pairs=spec.pairs)
        session_ids = tuple(sorted({p.session_id for p in spec.pairs if p.session_id}))
        return await self._submit(tenant, request_id, NewJob(
            JobKind.UNLEARN, model, spec.to_json(), requested_version=request.version or None,
            method=method, session_ids=session_ids))

    async def _existing(self, tenant: str, request_id: str, kind: JobKind) -> unlearner_pb2.Job | None:
        job = await asyncio.to_thread(self._jobs.by_request, tenant, request_id, kind)
        return None if job is None else job_message(job)

    async def _submit(self, tenant: str, request_id: str, job: NewJob) -> unlearner_pb2.Job:
        record, _ = await asyncio.to_thread(self._jobs.create, tenant, request_id, job)
        self._runner.wake()
        return job_message(record)

    async def GetJob(self, request: unlearner_pb2.GetJobRequest,
                     context: grpc.aio.ServicerContext) -> unlearner_pb2.Job:
        return job_message(await self._job(context, request.job_id))

    async def CancelJob(self, request: unlearner_pb2.CancelJobRequest,
                        context: grpc.aio.ServicerContext) -> unlearner_pb2.Job:
        job_id = _job_id(request.job_id)
        return job_message(await asyncio.to_thread(self._jobs.cancel, tenant_id(context), job_id))

    async def WatchJob(self, request: unlearner_pb2.GetJobRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[unlearner_pb2.Job]:
        job = await self._job(context, request.job_id)
        last = job_message(job)
        yield last
        while not job.state.terminal:
            await asyncio.sleep(self._config.watch_poll_seconds)
            job = await self._job(context, request.job_id)
            current = job_message(job)
            if current != last:
                last = current
                yield current

    async def _job(self, context: grpc.aio.ServicerContext, job_id: str) -> JobRecord:
        return await asyncio.to_thread(self._jobs.get, tenant_id(context), _job_id(job_id))

    # --- evaluation ------------------------------------------------------------------------------

    async def Evaluate(self, request: unlearner_pb2.EvaluateRequest,
                       context: grpc.aio.ServicerContext) -> unlearner_pb2.EvaluateResponse:
        registry = self._registry(context)

        def compare() -> dict[str, float]:
            version = registry.card(request.model, request.version or None).version
            return workflow.compare(registry, model=request.model, version=version,
                                    reference=request.reference_version or None)

        return unlearner_pb2.EvaluateResponse(metrics=await asyncio.to_thread(compare))


def _job_id(job_id: str) -> str:
    """A job id as the job store writes them (a UUID); any other is a job that does not exist
    (and never reaches the database, which refuses some characters, e.g. NUL)."""
    if not job_id:
        raise InvalidArgument("no job id")
    try:
        canonical = str(uuid.UUID(job_id))
    except ValueError:
        canonical = None
    if canonical != job_id:
        raise NotFound(f"job {quoted(job_id)} not found")
    return job_id
