"""Start-up of the anonymizer: the server comes up NOT_SERVING, the model is pulled and loaded
(ONNX export when selected) and the identity calibration warmed for every level, then SERVING.

    app = await start(AnonymizerConfig.load(), ServerConfig.load(...), store, store_config)
    await app.server.wait_for_termination()
    await app.stop()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch

from services.anonymizer.batcher import Batcher
from services.anonymizer.config import AnonymizerConfig
from services.anonymizer.photos import PhotoFaces
from services.anonymizer.servicer import AnonymizerServicer, LoadedModel
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.convert import model_info_to_proto
from veil.diffusion.loading import resolve_model
from veil.diffusion.mechanisms import calibrate_identity
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.errors import ConfigError
from veil.faces import FacePipeline, HogDetector, MmodDetector
from veil.privacy import IDENTITY_DELTA, LEVELS
from veil.rpc import ServerConfig, VeilServer
from veil.store import ObjectStore, StoreConfig
from veil.v1 import anonymizer_pb2_grpc

log = logging.getLogger(__name__)


def load_anonymizer(config: AnonymizerConfig, store_config: StoreConfig) -> Anonymizer:
    """The model of VEIL_MODEL_URI on the configured device and runtime, calibration warmed."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("VEIL_ANONYMIZER_DEVICE=cuda, but torch sees no CUDA device")
    started = time.perf_counter()
    folder = resolve_model(config.model_uri, store_config, config.model_cache_dir)
    model = DiffusionAutoencoder.from_pretrained(folder, config.device)
    if config.runtime == "onnxruntime":
        model.use_onnxruntime(Path(config.model_cache_dir) / "onnx")
    sampling = model.card.sampling
    if config.sampling_steps is not None:
        sampling = dataclasses.replace(sampling, steps=config.sampling_steps)
    anonymizer = Anonymizer(model, sampling, max_batch=config.batch_max_size, decode_tries=config.decode_tries)
    for row in LEVELS:
        if row.identity_epsilon is not None:
            calibrate_identity(row.identity_epsilon, IDENTITY_DELTA, model.encoder.radius)
    log.info("loaded model %s from %s (%s on %s, %d steps, %d decode tries) in %.1f s", model.card.model_version,
             folder, config.runtime, config.device, sampling.steps, config.decode_tries, time.perf_counter() - started)
    return anonymizer


def face_pipeline(config: AnonymizerConfig, crop_size: int) -> FacePipeline:
    """The photo pipeline for the model's resolution, with the configured detector."""
    detector = (HogDetector(upsample=config.face_upsample) if config.face_detector == "hog"
                else MmodDetector(upsample=config.face_upsample))
    return FacePipeline(crop_size, detector, min_face=config.min_face)


@dataclass
class AnonymizerApp:
    server: VeilServer
    batcher: Batcher
    faces: PhotoFaces

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)
        await self.batcher.stop()
        await asyncio.to_thread(self.faces.close)


async def start(config: AnonymizerConfig, server_config: ServerConfig, store: ObjectStore,
                store_config: StoreConfig,
                interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> AnonymizerApp:
    """Serve, load, then report SERVING; ConfigError (server stopped) when the model cannot load."""
    servicer = AnonymizerServicer(store, config)
    server = VeilServer(server_config, [(anonymizer_pb2_grpc.add_AnonymizerServicer_to_server, servicer)],
                        interceptors=interceptors)
    await server.start()
    try:
        anonymizer = await asyncio.to_thread(load_anonymizer, config, store_config)
    except Exception as exc:  # whatever stops the model from loading stops the service
        await server.stop(0)
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"VEIL_MODEL_URI={config.model_uri!r}: cannot load the model: {exc}") from exc
    batcher = Batcher(anonymizer, config.batch_max_size, config.batch_max_wait_seconds, config.queue_max_size)
    batcher.start()
    info = model_info_to_proto(anonymizer.model.card, sampling_steps=anonymizer.sampling.steps,
                               decode_tries=anonymizer.decode_tries, runtime=config.runtime, device=config.device,
                               max_images_per_request=config.max_images_per_request,
                               max_image_bytes=config.max_image_bytes)
    faces = PhotoFaces(face_pipeline(config, anonymizer.model.image_size))
    servicer.attach(LoadedModel(anonymizer, batcher, info, faces))
    await server.set_serving(True)
    return AnonymizerApp(server, batcher, faces)
