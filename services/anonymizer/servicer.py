"""The Anonymizer gRPC servicer: photos in, their faces found and aligned (photos.py), every crop
of a request in one micro-batch of Diffusion-DP (batcher.py), candidates composed back, results out.

RPC contract and error codes: protos/veil/v1/anonymizer.proto.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from services.anonymizer import metrics
from services.anonymizer.batcher import Batcher, BatchProgress, Results, Work
from services.anonymizer.config import AnonymizerConfig
from services.anonymizer.inputs import InputImage, decode_inputs, drain_upload, read_inputs, receive_upload
from services.anonymizer.photos import FaceRequest, PhotoFaces, ReleasedPhoto, face_requests, face_to_proto
from services.anonymizer.outputs import (PendingObject, delete_all, image_key, input_key, output_prefix,
                                         receipt_json, receipt_key, write_all)
from veil import errors
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.mechanisms import calibrate_identity
from veil.faces.photo import encode_photo
from veil.privacy import IDENTITY_DELTA, PrivacySettings, require_candidates
from veil.privacy.convert import settings_from_proto
from veil.rpc import tenant_id
from veil.rpc.interceptors import SERVER_FAULT_CODES, status_for
from veil.store import ObjectInfo, ObjectStore, to_object_ref
from veil.store.keys import tenant_prefix
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc, common_pb2


Photos = list[list[ReleasedPhoto]]  # [image][candidate]


@dataclass(frozen=True)
class LoadedModel:
    anonymizer: Anonymizer
    batcher: Batcher
    info: anonymizer_pb2.ModelInfo
    faces: PhotoFaces


@dataclass(frozen=True)
class _Request:
    """A validated AnonymizeRequest."""

    settings: PrivacySettings
    candidates: int
    seed: int | None
    prefix: str
    faces: list[FaceRequest]


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if not isinstance(exc, errors.VeilError):
        return "failed"
    code = status_for(exc)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "rejected"
    if code == grpc.StatusCode.ABORTED:
        return "cancelled"
    return "failed" if code in SERVER_FAULT_CODES or code == grpc.StatusCode.UNAVAILABLE else "invalid"


def _progress(event: BatchProgress, images: int) -> anonymizer_pb2.AnonymizeEvent:
    return anonymizer_pb2.AnonymizeEvent(progress=common_pb2.Progress(
        stage=event.stage, step=event.step, total_steps=event.total, image_count=images,
        message=event.message, batch_id=event.batch_id))


class AnonymizerServicer(anonymizer_pb2_grpc.AnonymizerServicer):
    def __init__(self, store: ObjectStore, config: AnonymizerConfig) -> None:
        self._store = store
        self._config = config
        self._model: LoadedModel | None = None
        # Calibrations of new identity eps run one at a time (each takes up to ~5 s of a core,
        # bounded by MAX_EPSILON): callers wait here, and leave when cancelled or past their
        # deadline, instead of piling up threads that would outlive them.
        self._calibrating = asyncio.Lock()

    def attach(self, model: LoadedModel) -> None:
        """Start answering with a loaded model (until then every RPC is UNAVAILABLE)."""
        self._model = model

    def _loaded(self) -> LoadedModel:
        if self._model is None:
            raise errors.Unavailable("the anonymizer is loading its model; retry shortly")
        return self._model

    async def GetModelInfo(self, request: anonymizer_pb2.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> anonymizer_pb2.ModelInfo:
        return self._loaded().info

    async def Anonymize(self, request: anonymizer_pb2.AnonymizeRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[anonymizer_pb2.AnonymizeEvent]:
        model, tenant = self._loaded(), tenant_id(context)
        config = self._config
        try:
            if not 1 <= len(request.images) <= config.max_images_per_request:
                raise errors.InvalidArgument(f"a request names 1..{config.max_images_per_request} images, "
                                             f"got {len(request.images)}")
            checked = await self._validate(model, request, tenant, len(request.images))
            inputs = await asyncio.to_thread(read_inputs, self._store.for_tenant(tenant), request.images,
                                             config.max_image_bytes)
        except BaseException as exc:
            metrics.IMAGES.labels(_outcome(exc)).inc(len(request.images))
            raise
        async for event in self._anonymize(model, tenant, checked, inputs, context):
            yield event

    async def AnonymizeUpload(self, request_iterator: AsyncIterator[anonymizer_pb2.AnonymizeUploadRequest],
                              context: grpc.aio.ServicerContext) -> AsyncIterator[anonymizer_pb2.AnonymizeEvent]:
        config = self._config
        try:
            model, tenant = self._loaded(), tenant_id(context)
        except errors.VeilError:
            await drain_upload(request_iterator, config.max_images_per_request * config.max_image_bytes)
            raise
        try:
            request, inputs = await receive_upload(request_iterator, config.max_images_per_request,
                                                   config.max_image_bytes)
            checked = await self._validate(model, request, tenant, len(inputs))
        except BaseException as exc:
            metrics.IMAGES.labels(_outcome(exc)).inc()
            raise
        async for event in self._anonymize(model, tenant, checked, inputs, context):
            yield event

    async def _validate(self, model: LoadedModel, request: anonymizer_pb2.AnonymizeRequest, tenant: str,
                        images: int) -> _Request:
        # Seeds need no check: every uint64 is one (veil.privacy.limits).
        require_candidates(request.candidates)
        anonymizer = model.anonymizer
        settings = settings_from_proto(request.privacy if request.HasField("privacy") else None,
                                       list(request.protect), anonymizer.model.attribute_names)
        prefix = output_prefix(request.output_prefix, tenant_prefix(tenant), images)
        if settings.identity_epsilon is not None:
            # Calibrating a new eps takes seconds: do it here (cached), not in the shared batch.
            async with self._calibrating:
                await asyncio.to_thread(calibrate_identity, settings.identity_epsilon, IDENTITY_DELTA,
                                        anonymizer.model.encoder.radius)
        return _Request(settings, request.candidates, request.seed or None, prefix, face_requests(request, images))

    async def _anonymize(self, model: LoadedModel, tenant: str, request: _Request, inputs: list[InputImage],
                         context: grpc.aio.ServicerContext) -> AsyncIterator[anonymizer_pb2.AnonymizeEvent]:
        store = self._store.for_tenant(tenant)
        count = len(inputs)
        written: list[ObjectInfo] = []
        work: Work | None = None
        try:
            photos = await asyncio.to_thread(decode_inputs, inputs, self._config.max_photo_side)
            planned = await model.faces.plan(photos, request.faces)
            crops = [crop for item in planned for crop in item.crops]
            anonymized: Results = []
            if crops:  # a request whose photos have no face to re-synthesize needs no model
                work = Work(crops, request.settings, request.candidates, request.seed, context.time_remaining())
                model.batcher.submit(work)
                async for item in work.events():
                    if isinstance(item, BatchProgress):
                        yield _progress(item, count)
                    else:
                        anonymized = item
            results = await asyncio.to_thread(model.faces.compose, planned, anonymized, request.candidates,
                                              request.seed)
            pending = await asyncio.to_thread(_pending_objects, request.prefix, inputs, results)
            written = await _write(store, pending)
            for event in await asyncio.to_thread(_result_events, store, inputs, results, written):
                yield event
        except BaseException as exc:
            if work is not None:
                work.cancel()
            if written:  # the caller will not see every result: keep none
                asyncio.get_running_loop().run_in_executor(None, delete_all, store, [w.key for w in written])
            metrics.IMAGES.labels(_outcome(exc)).inc(count)
            raise
        metrics.IMAGES.labels("succeeded").inc(count)


async def _write(store: ObjectStore, pending: Sequence[PendingObject]) -> list[ObjectInfo]:
    """write_all in a thread; a call cancelled meanwhile leaves nothing behind."""
    abandoned = threading.Event()
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, write_all, store, pending, abandoned)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        abandoned.set()

        def discard(done: asyncio.Future[list[ObjectInfo]]) -> None:
            if not done.cancelled() and done.exception() is None:  # finished before it saw `abandoned`
                loop.run_in_executor(None, delete_all, store, [info.key for info in done.result()])
        future.add_done_callback(discard)
        raise


def _pending_objects(prefix: str, inputs: Sequence[InputImage], results: Photos) -> list[PendingObject]:
    """Everything a request writes, in the order of `written` in _result_events: per image its
    offered candidates (in the input's format) and receipts, then the uploaded inputs."""
    pending = []
    for i, candidates in enumerate(results):
        for c, item in enumerate(candidates):
            if item.photo is None:  # refused: nothing of it is stored
                continue
            photo = item.photo
            data = encode_photo(photo.pixels, photo.format, photo.alpha)
            pending.append(PendingObject(image_key(prefix, i, c, photo.content_type), data, photo.content_type))
            pending.append(PendingObject(receipt_key(prefix, i, c), receipt_json(item.receipt_json()),
                                         "application/json"))
    for i, image in enumerate(inputs):
        if image.stored is None:
            assert image.content_type is not None  # uploads always declare it
            pending.append(PendingObject(input_key(prefix, i, image.content_type), image.data, image.content_type))
    return pending


def _result_events(store: ObjectStore, inputs: Sequence[InputImage], results: Photos,
                   written: Sequence[ObjectInfo]) -> list[anonymizer_pb2.AnonymizeEvent]:
    """Per image: an "image_done" progress event, then its candidates as refs with receipts (a
    refused one with its refusal and no refs)."""
    bucket = store.bucket
    objects = iter(written)
    outputs = [[(next(objects), next(objects)) if item.offered else None for item in candidates]
               for candidates in results]
    stored = [image.stored or next(objects) for image in inputs]
    events = []
    for i, candidates in enumerate(results):
        events.append(anonymizer_pb2.AnonymizeEvent(progress=common_pb2.Progress(
            stage="image_done", step=i + 1, total_steps=len(results), image_index=i, image_count=len(results))))
        for c, item in enumerate(candidates):
            faces = [face_to_proto(face) for face in item.faces]
            candidate = anonymizer_pb2.Candidate(image_index=i, candidate_index=c, faces=faces, refusal=item.refusal,
                                                 input=to_object_ref(stored[i], bucket))
            if item.photo is not None:
                image, receipt = outputs[i][c]
                height, width = item.photo.pixels.shape[:2]
                url = store.presigned_get_url(image.key) or ""
                candidate.image.CopyFrom(common_pb2.ImageRef(object=to_object_ref(image, bucket), width=width,
                                                             height=height, url=url))
                candidate.receipt_object.CopyFrom(to_object_ref(receipt, bucket))
            first = next((face.receipt for face in faces if face.HasField("receipt")), None)
            if first is not None:  # Candidate.receipt: the first anonymized face's (a crop's only one)
                candidate.receipt.CopyFrom(first)
            events.append(anonymizer_pb2.AnonymizeEvent(candidate=candidate))
    return events
