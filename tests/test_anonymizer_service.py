"""The anonymizer service on loopback: a real server with the tiny model, the local store and S3
(nanio). Model info, Anonymize by refs and by upload, micro-batching across callers, the bounded
queue, deadlines and cancellation, and every bad input with its status code (the service keeps
serving after each)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from services.anonymizer.app import AnonymizerApp, start
from services.anonymizer.config import AnonymizerConfig
from services.anonymizer.servicer import AnonymizerServicer
from veil.data import load_celeba
from veil.diffusion.convert import receipt_from_proto
from veil.diffusion.loading import upload_model
from veil.errors import ConfigError
from veil.images import decode_image, encode_png
from veil.privacy import MAX_EPSILON, Mechanism
from veil.rpc import ServerConfig, VeilServer
from veil.store import LocalStore, ObjectStore, StoreConfig
from veil.store.s3 import S3Store
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc, common_pb2

ROOT = Path(__file__).resolve().parent.parent
TENANT = "acme"
META = (("x-veil-tenant", TENANT),)
Code = grpc.StatusCode


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def faces(tiny_faces: Path) -> list[bytes]:
    return [encode_png(img) for img in load_celeba(tiny_faces, size=16, limit=8).images]


@dataclasses.dataclass
class Service:
    app: AnonymizerApp
    store: ObjectStore  # the tenant's view
    stub: anonymizer_pb2_grpc.AnonymizerStub

    def refs(self, keys: list[str]) -> list[common_pb2.ObjectRef]:
        refs = []
        for key in keys:
            info = self.store.stat(key)
            refs.append(common_pb2.ObjectRef(key=key, sha256=info.sha256, size=info.size,
                                             content_type=info.content_type))
        return refs

    def request(self, keys: list[str], prefix: str = "out/r", candidates: int = 1, **fields) -> anonymizer_pb2.AnonymizeRequest:
        fields.setdefault("protect", ["Male"])
        fields.setdefault("privacy", common_pb2.PrivacySetting(level=5))
        return anonymizer_pb2.AnonymizeRequest(images=self.refs(keys), candidates=candidates, output_prefix=prefix,
                                               seed=7, **fields)

    async def events(self, request, metadata=META, timeout: float | None = 60) -> list[anonymizer_pb2.AnonymizeEvent]:
        return [e async for e in self.stub.Anonymize(request, metadata=metadata, timeout=timeout)]

    async def still_serves(self, faces_key: str = "faces/0.png") -> None:
        events = await self.events(self.request([faces_key], prefix="out/check"))
        assert [e.candidate.candidate_index for e in events if e.WhichOneof("event") == "candidate"] == [0]


def put_faces(store: ObjectStore, faces: list[bytes]) -> None:
    for i, data in enumerate(faces):
        store.put(f"faces/{i}.png", data, content_type="image/png")


@contextlib.asynccontextmanager
async def serving(model_uri: str, store: ObjectStore, store_config: StoreConfig, cache_dir: Path,
                  max_message_bytes: int = 4 << 20, **overrides) -> AsyncIterator[Service]:
    # Unverified unless a test asks (decode_tries): the tiny model's classifier refuses many of its decodes.
    config = AnonymizerConfig(**{"model_uri": model_uri, "model_cache_dir": str(cache_dir), "sampling_steps": 2,
                                 "batch_max_size": 16, "batch_max_wait_seconds": 0.01, "decode_tries": 0, **overrides})
    server_config = ServerConfig(grpc_address="127.0.0.1:0", metrics_port=0, max_message_bytes=max_message_bytes)
    app = await start(config, server_config, store, store_config)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as channel:
            yield Service(app, store.for_tenant(TENANT), anonymizer_pb2_grpc.AnonymizerStub(channel))
    finally:
        await app.stop(0)


@pytest.fixture
def local(tmp_path: Path, tiny_model_dir: Path, faces: list[bytes]):
    """serving(**overrides) on a local-directory store holding the faces, model from its folder."""
    config = StoreConfig(backend="local", root=str(tmp_path / "objects"))
    store = LocalStore(config.root, config.bucket)
    put_faces(store.for_tenant(TENANT), faces)
    return lambda **overrides: serving(str(tiny_model_dir), store, config, tmp_path / "cache", **overrides)


def candidates_of(events) -> list[anonymizer_pb2.Candidate]:
    return [e.candidate for e in events if e.WhichOneof("event") == "candidate"]


def stages(events) -> list[str]:
    return [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]


def test_model_info(local, tiny_model_dir: Path) -> None:
    card = json.loads((tiny_model_dir / "model_card.json").read_text())

    async def scenario() -> None:
        async with local() as service:
            info = await service.stub.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=META)
            assert (info.model_version, info.image_size, info.max_candidates, info.default_level) == ("tiny-test", 16, 8, 5)
            assert (info.runtime, info.device, info.sampling_steps, info.identity_delta) == ("torch", "cpu", 2, 1e-5)
            assert [a.name for a in info.attributes] == card["attribute_names"]
            male = next(a for a in info.attributes if a.name == "Male")
            assert list(male.implied_by_protection) == card["implied"]["Male"]
            assert list(male.mechanisms) == [common_pb2.MECHANISM_RANDOMIZED_RESPONSE, common_pb2.MECHANISM_LAPLACE]
            assert [lv.level for lv in info.levels] == list(range(11))
            assert (info.levels[0].attribute_epsilon, info.levels[10].attribute_epsilon) == (0.0, 0.25)
            # The tiny model guides against the original's attributes: no level claims the image.
            assert card["sampling"]["guidance_base"] == "source"
            assert not any(lv.image_level_guarantee for lv in info.levels)
    run(scenario())


def test_rpcs_are_unavailable_until_the_model_is_loaded(tmp_path: Path) -> None:
    async def scenario() -> None:
        servicer = AnonymizerServicer(LocalStore(tmp_path / "objects"), AnonymizerConfig())
        server = VeilServer(ServerConfig(grpc_address="127.0.0.1:0", metrics_port=0),
                            [(anonymizer_pb2_grpc.add_AnonymizerServicer_to_server, servicer)])
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = anonymizer_pb2_grpc.AnonymizerStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=META)
                assert err.value.code() == Code.UNAVAILABLE and "loading its model" in err.value.details()
        finally:
            await server.stop(0)
    run(scenario())


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_anonymize_refs_streams_progress_and_stores_results(backend: str, tmp_path: Path, tiny_model_dir: Path,
                                                           faces: list[bytes], request: pytest.FixtureRequest) -> None:
    if backend == "s3":  # the model is pulled from the store too
        config = request.getfixturevalue("nanio").config()
        store = S3Store(config)
        store.ensure_bucket()
        upload_model(tiny_model_dir, store, "models/tiny/v1")
        model_uri = "store://models/tiny/v1"
    else:
        config = StoreConfig(backend="local", root=str(tmp_path / "objects"))
        store = LocalStore(config.root, config.bucket)
        model_uri = str(tiny_model_dir)
    put_faces(store.for_tenant(TENANT), faces[:2])
    succeeded = metric("veil_anonymizer_images_total", outcome="succeeded")
    steps = [metric("veil_anonymizer_diffusion_step_seconds_count", stage=stage) for stage in ("invert", "decode")]

    async def scenario() -> None:
        async with serving(model_uri, store, config, tmp_path / "cache") as service:
            events = await service.events(service.request(["faces/0.png", "faces/1.png"], prefix="sessions/s1/rounds/1",
                                                          candidates=3, protect=["Male", "Smiling"]))
            got = stages(events)
            assert got[:2] == ["queued", "started"] and "invert" in got and "decode" in got
            decode = [e.progress for e in events if e.progress.stage == "decode"]
            assert [(p.step, p.total_steps) for p in decode] == [(1, 2), (2, 2)]  # 6 rows: one chunk, 2 steps
            assert len({e.progress.batch_id for e in events if e.progress.stage in ("started", "invert", "decode")}) == 1
            assert got.count("image_done") == 2
            found = candidates_of(events)
            assert [(c.image_index, c.candidate_index) for c in found] == [(i, k) for i in range(2) for k in range(3)]
            for c in found:
                key = f"sessions/s1/rounds/1/{c.image_index}-{c.candidate_index}.png"
                assert (c.image.object.key, c.image.object.bucket, c.image.width, c.image.height) == (key, store.bucket, 16, 16)
                data = service.store.get(key, expected_sha256=c.image.object.sha256)
                assert decode_image(data, 16, "image/png").shape == (16, 16, 3)
                assert bool(c.image.url) == (backend == "s3")
                assert c.input.key == f"faces/{c.image_index}.png"
                assert c.input.sha256 == hashlib.sha256(faces[c.image_index]).hexdigest()
                stored = json.loads(service.store.get(c.receipt_object.key, expected_sha256=c.receipt_object.sha256))
                [face] = c.faces  # a model-size image is one aligned face
                assert (face.action, face.box, face.receipt) == (common_pb2.FACE_ACTION_ANONYMIZED,
                                                                 common_pb2.FaceBox(right=16, bottom=16), c.receipt)
                [stored] = [f["receipt"] for f in stored["faces"]]
                receipt = receipt_from_proto(c.receipt)
                assert stored["receipt_id"] == receipt.receipt_id == c.receipt.receipt_id
                assert (receipt.level, receipt.seed, receipt.model_version, receipt.candidate) == \
                    (5, 7, "tiny-test", c.candidate_index)
                assert [a.attribute for a in receipt.attributes] == ["Male", "Smiling"]
                spend = receipt.spend()
                assert {e.mechanism for e in spend.events()} == {Mechanism.RANDOMIZED_RESPONSE, Mechanism.GAUSSIAN}
                assert receipt.identity_noise_multiplier == pytest.approx(stored["identity_noise_multiplier"])
            assert len(list(service.store.list("sessions/s1/rounds/1/"))) == 12
    run(scenario())
    assert metric("veil_anonymizer_images_total", outcome="succeeded") == succeeded + 2
    assert [metric("veil_anonymizer_diffusion_step_seconds_count", stage=stage) for stage in ("invert", "decode")] == \
        [steps[0] + 2, steps[1] + 2]


def chunked_upload(request: anonymizer_pb2.AnonymizeRequest, images: list[tuple[bytes, str]], chunk: int = 200,
                   sha256: bool = True):
    yield anonymizer_pb2.AnonymizeUploadRequest(request=request)
    for data, content_type in images:
        yield anonymizer_pb2.AnonymizeUploadRequest(image=common_pb2.UploadHeader(
            content_type=content_type, size=len(data), sha256=hashlib.sha256(data).hexdigest() if sha256 else ""))
        for start in range(0, len(data), chunk):
            yield anonymizer_pb2.AnonymizeUploadRequest(chunk=common_pb2.Chunk(data=data[start:start + chunk]))


def test_upload_stores_inputs_with_the_results_on_onnxruntime(local, faces: list[bytes], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with local(runtime="onnxruntime") as service:
            info = await service.stub.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=META)
            assert info.runtime == "onnxruntime" and len(list((tmp_path / "cache" / "onnx").glob("*/denoiser.onnx"))) == 1
            request = anonymizer_pb2.AnonymizeRequest(protect=["Male"], candidates=2, output_prefix="up/1",
                                                      privacy=common_pb2.PrivacySetting(explicit=common_pb2.ExplicitBudget(
                                                          attribute_epsilon={"Male": 1.5}, identity_epsilon=8.0, rho=0.2)))
            parts = chunked_upload(request, [(faces[2], "image/png"), (faces[3], "image/png")])
            events = [e async for e in service.stub.AnonymizeUpload(parts, metadata=META, timeout=60)]
            found = candidates_of(events)
            assert len(found) == 4
            for c in found:
                assert c.input.key == f"up/1/inputs/{c.image_index}.png"
                assert service.store.get(c.input.key) == faces[2 + c.image_index]
                assert c.input.sha256 == hashlib.sha256(faces[2 + c.image_index]).hexdigest()
                receipt = c.receipt
                assert (receipt.level, receipt.attributes[0].epsilon, receipt.identity_epsilon, receipt.rho) == (-1, 1.5, 8.0, 0.2)
    run(scenario())


def test_two_callers_are_served_in_one_batch(local) -> None:
    rows = metric("veil_anonymizer_batch_rows_sum"), metric("veil_anonymizer_batch_rows_count")
    waits = metric("veil_anonymizer_queue_wait_seconds_count")

    async def scenario() -> None:
        # The batch closes when full (4 rows): both requests must be in it, the wait never runs out.
        async with local(batch_max_size=4, batch_max_wait_seconds=30.0) as service:
            first, second = await asyncio.gather(
                service.events(service.request(["faces/0.png"], prefix="a", candidates=2)),
                service.events(service.request(["faces/1.png"], prefix="b", candidates=2,
                                               privacy=common_pb2.PrivacySetting(level=8))))
            ids = [{e.progress.batch_id for e in events if e.progress.batch_id} for events in (first, second)]
            assert ids[0] == ids[1] and len(ids[0]) == 1
            assert "batch of 2 request(s), 4 row(s)" in [e.progress.message for e in first]
            assert [c.receipt.level for c in candidates_of(first)] == [5, 5]
            assert [c.receipt.level for c in candidates_of(second)] == [8, 8]
    run(scenario())
    assert (metric("veil_anonymizer_batch_rows_sum"), metric("veil_anonymizer_batch_rows_count")) == (rows[0] + 4, rows[1] + 1)
    assert metric("veil_anonymizer_queue_wait_seconds_count") == waits + 2


async def drain(call) -> list[anonymizer_pb2.AnonymizeEvent]:
    return [e async for e in call]


async def wait_for_stage(call, stage: str) -> None:
    async for event in call:
        if event.progress.stage == stage:
            return
    raise AssertionError(f"the call ended before {stage!r}")


SLOW = dict(sampling_steps=50, batch_max_size=64, queue_max_size=1)


def test_full_queue_refuses_and_a_cancelled_batch_stops(local) -> None:
    aborted = metric("veil_anonymizer_batches_total", outcome="aborted")
    rejected = metric("veil_anonymizer_images_total", outcome="rejected")

    async def scenario() -> None:
        async with local(**SLOW) as service:
            big = service.stub.Anonymize(service.request([f"faces/{i}.png" for i in range(8)], prefix="big", candidates=8),
                                         metadata=META, timeout=60)
            await wait_for_stage(big, "invert")  # running
            queued = service.stub.Anonymize(service.request(["faces/0.png"], prefix="queued"), metadata=META, timeout=60)
            await wait_for_stage(queued, "queued")
            assert metric("veil_anonymizer_queue_depth") == 1
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await service.events(service.request(["faces/1.png"], prefix="refused"))
            assert full.value.code() == Code.RESOURCE_EXHAUSTED and "queue is full" in full.value.details()
            big.cancel()
            rest = [e async for e in queued]  # served once the big batch stopped
            assert len(candidates_of(rest)) == 1
            assert list(service.store.list("big/")) == [] and list(service.store.list("refused/")) == []
            await service.still_serves()
    run(scenario())
    assert metric("veil_anonymizer_queue_depth") == 0
    assert metric("veil_anonymizer_batches_total", outcome="aborted") == aborted + 1
    assert metric("veil_anonymizer_images_total", outcome="rejected") == rejected + 1


def test_deadlines_stop_running_and_queued_work_and_write_nothing(local) -> None:
    aborted = metric("veil_anonymizer_batches_total", outcome="aborted")
    batches = metric("veil_anonymizer_batch_rows_count")

    async def scenario() -> None:
        async with local(**SLOW) as service:
            big = service.stub.Anonymize(service.request([f"faces/{i}.png" for i in range(8)], prefix="big", candidates=8),
                                         metadata=META, timeout=2.0)
            await wait_for_stage(big, "invert")
            running = asyncio.ensure_future(drain(big))
            queued = asyncio.ensure_future(service.events(service.request(["faces/0.png"], prefix="queued"), timeout=0.3))
            for call in (queued, running):
                with pytest.raises(grpc.aio.AioRpcError) as late:
                    await call
                assert late.value.code() == Code.DEADLINE_EXCEEDED
            await asyncio.sleep(0.5)  # let the stopped batch's thread wind down
            assert list(service.store.list("big/")) == [] and list(service.store.list("queued/")) == []
            await service.still_serves()
    run(scenario())
    assert metric("veil_anonymizer_batches_total", outcome="aborted") == aborted + 1
    # The big batch and the follow-up ran; the queued request was dropped before any work.
    assert metric("veil_anonymizer_batch_rows_count") == batches + 2


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, with no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def explicit(**eps: float) -> common_pb2.PrivacySetting:
    return common_pb2.PrivacySetting(explicit=common_pb2.ExplicitBudget(attribute_epsilon=eps))


def test_bad_inputs_get_their_codes_and_the_service_keeps_serving(local, faces: list[bytes], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with local(max_message_bytes=64 << 10, max_images_per_request=4) as service:
            tenant = service.store
            tenant.put("bad/corrupt.png", b"\x89PNG not really", content_type="image/png")
            tenant.put("bad/empty.png", png_header(0, 0), content_type="image/png")
            tenant.put("bad/huge.png", png_header(10000, 10000), content_type="image/png")
            tenant.put("bad/text.png", faces[0], content_type="text/plain")
            other = LocalStore(tmp_path / "objects", "veil").for_tenant("globex")
            other.put("secret.png", faces[1], content_type="image/png")
            ref = service.refs(["faces/0.png"])[0]

            def req(**fields) -> anonymizer_pb2.AnonymizeRequest:
                base = dict(images=[ref], protect=["Male"], candidates=1, output_prefix="out/bad",
                            privacy=common_pb2.PrivacySetting(level=3))
                return anonymizer_pb2.AnonymizeRequest(**{**base, **fields})

            def key(k: str, **ref_fields) -> list[common_pb2.ObjectRef]:
                return [common_pb2.ObjectRef(key=k, **ref_fields)]

            cases = [
                (req(images=key("bad/corrupt.png")), Code.INVALID_ARGUMENT, "not a readable PNG"),
                (req(images=key("bad/empty.png")), Code.INVALID_ARGUMENT, "image 0: not a readable PNG"),
                (req(images=key("bad/huge.png")), Code.INVALID_ARGUMENT, "10000x10000 is larger than 4096 px"),
                (req(images=key("bad/text.png")), Code.INVALID_ARGUMENT, "content type 'text/plain' is not supported"),
                (req(images=key("faces/0.png", content_type="image/jpeg")), Code.INVALID_ARGUMENT, "bytes are PNG"),
                (req(faces=[anonymizer_pb2.ImageFaces(use_boxes=True, boxes=[common_pb2.FaceBox(right=17, bottom=8)])]),
                 Code.INVALID_ARGUMENT, "image 0: box 0 (0, 0, 17, 8): outside the 16x16 image"),
                (req(faces=[anonymizer_pb2.ImageFaces(keep_indices=[0])] * 2), Code.INVALID_ARGUMENT,
                 "faces has 2 entries"),
                (req(protect=["Wings"]), Code.INVALID_ARGUMENT, "unknown attribute(s) 'Wings'"),
                (req(privacy=explicit(Male=0.0)), Code.INVALID_ARGUMENT, "epsilon must be finite and > 0"),
                (req(privacy=explicit(Male=-1.0)), Code.INVALID_ARGUMENT, "epsilon must be finite and > 0"),
                (req(privacy=explicit(Male=math.nan)), Code.INVALID_ARGUMENT, "epsilon must be finite and > 0"),
                (req(privacy=explicit(Male=math.inf)), Code.INVALID_ARGUMENT, "epsilon must be finite and > 0"),
                (req(privacy=common_pb2.PrivacySetting(explicit=common_pb2.ExplicitBudget(
                    attribute_epsilon={"Male": 1.0}, identity_epsilon=math.nan))), Code.INVALID_ARGUMENT, "identity"),
                (req(privacy=common_pb2.PrivacySetting(level=11)), Code.INVALID_ARGUMENT,
                 "privacy level must be an integer in 0..10"),
                (req(candidates=0), Code.INVALID_ARGUMENT, "candidates must be an integer in 1..8"),
                (req(candidates=9), Code.INVALID_ARGUMENT, "candidates must be an integer in 1..8"),
                (req(images=[]), Code.INVALID_ARGUMENT, "1..4 images"),
                (req(images=[ref] * 5), Code.INVALID_ARGUMENT, "1..4 images"),
                (req(output_prefix=""), Code.INVALID_ARGUMENT, "output_prefix is required"),
                (req(output_prefix="../globex/x"), Code.INVALID_ARGUMENT, "'..' segment"),
                (req(images=key("faces/missing.png")), Code.NOT_FOUND, "not found"),
                (req(images=key("faces/0.png", sha256="0" * 64)), Code.DATA_LOSS, "expected " + "0" * 64),
                (req(images=key("faces/0.png", size=ref.size + 1)), Code.DATA_LOSS, "the ref says"),
                (req(images=key("../globex/secret.png")), Code.INVALID_ARGUMENT, "'..' segment"),
                (req(images=key("tenants/globex/secret.png")), Code.NOT_FOUND, "not found"),
            ]
            for request, code, message in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await service.events(request)
                assert (err.value.code(), message in err.value.details()) == (code, True), (request, err.value.details())
                await service.still_serves()

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await service.events(req(), metadata=())
            assert err.value.code() == Code.UNAUTHENTICATED

            first = anonymizer_pb2.AnonymizeRequest(protect=["Male"], candidates=1, output_prefix="up/bad")
            Part = anonymizer_pb2.AnonymizeUploadRequest
            wrong_sha = list(chunked_upload(first, [(faces[0], "image/png")]))
            wrong_sha[1].image.sha256 = "1" * 64
            short = list(chunked_upload(first, [(faces[0], "image/png")]))
            short[1].image.size += 10
            header = common_pb2.UploadHeader(content_type="image/png", size=200 << 10)
            uploads = [
                (wrong_sha, Code.DATA_LOSS, "declared " + "1" * 64),
                (short, Code.INVALID_ARGUMENT, "declared size is"),
                # refused at the header, while the client still sends chunks
                (list(chunked_upload(first, [(faces[0], "text/plain")], chunk=16)), Code.INVALID_ARGUMENT,
                 "content type 'text/plain' is not supported"),
                ([Part(chunk=common_pb2.Chunk(data=b"x"))], Code.INVALID_ARGUMENT, "must be `request`"),
                ([Part(request=first), Part(chunk=common_pb2.Chunk(data=b"x"))], Code.INVALID_ARGUMENT,
                 "before any UploadHeader"),
                ([Part(request=first)], Code.INVALID_ARGUMENT, "no images"),
                ([Part(request=first), Part(image=header), Part(chunk=common_pb2.Chunk(data=bytes(100 << 10)))],
                 Code.RESOURCE_EXHAUSTED, "larger than max"),
                (list(chunked_upload(first, [(faces[0], "image/png")], chunk=16)), Code.UNAUTHENTICATED,
                 "missing x-veil-tenant metadata"),
            ]
            for parts, code, message in uploads:
                metadata = () if code == Code.UNAUTHENTICATED else META
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in service.stub.AnonymizeUpload(iter(parts), metadata=metadata, timeout=30):
                        pass
                assert (err.value.code(), message in err.value.details()) == (code, True), err.value.details()
                await service.still_serves()
            assert list(service.store.list("out/bad")) == [] and list(service.store.list("up/")) == []
    run(scenario())


def test_a_model_that_does_not_load_stops_the_start(tmp_path: Path) -> None:
    store_config = StoreConfig(backend="local", root=str(tmp_path / "objects"))
    config = AnonymizerConfig(model_uri=str(tmp_path / "no-model"), model_cache_dir=str(tmp_path / "cache"))

    async def scenario() -> None:
        with pytest.raises(ConfigError, match="cannot load the model: .*not a model folder"):
            await start(config, ServerConfig(grpc_address="127.0.0.1:0", metrics_port=0),
                        LocalStore(store_config.root), store_config)
    run(scenario())
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VEIL_MODEL_URI": "store://models/none",
           "VEIL_STORE_ROOT": str(tmp_path / "objects"), "VEIL_GRPC_ADDRESS": "127.0.0.1:0", "VEIL_METRICS_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.anonymizer"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)  # torch's import alone is slow on a busy machine
    assert done.returncode == 2
    assert "veil-anonymizer: configuration error: VEIL_MODEL_URI='store://models/none': cannot load the model" in done.stderr
    assert "model_manifest.json is missing" in done.stderr


def test_epsilon_above_the_bound_is_refused_before_any_calibration(local) -> None:
    # eps 1e12 once kept the PLD calibration running for minutes after the caller had gone.
    async def scenario() -> None:
        async with local() as service:
            ref = service.refs(["faces/0.png"])[0]
            budgets = [common_pb2.ExplicitBudget(attribute_epsilon={"Male": 1.0}, identity_epsilon=1e12),
                       common_pb2.ExplicitBudget(attribute_epsilon={"Male": MAX_EPSILON * 2}),
                       common_pb2.ExplicitBudget(attribute_epsilon={"Male": 1.0}, identity_epsilon=MAX_EPSILON + 1)]
            for budget in budgets:
                request = anonymizer_pb2.AnonymizeRequest(images=[ref], protect=["Male"], candidates=1,
                                                          output_prefix="out/eps",
                                                          privacy=common_pb2.PrivacySetting(explicit=budget))
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await service.events(request)
                assert err.value.code() == Code.INVALID_ARGUMENT
                assert f"at most {MAX_EPSILON:g}" in err.value.details(), err.value.details()
                assert time.monotonic() - started < 2.0
                await service.still_serves()
    run(scenario())
