"""The services as real processes on loopback: the anonymizer with the tiny model (one per test
run), gateways on a fresh PostgreSQL database, unlearners on databases of their own, all on one
nanio S3 bucket.

    gateway = start_gateway(VEIL_LEDGER_CAP="3")       # a process; stopped at the test's end
    with gateway.client("tenant-3") as client: ...     # a GatewayClient of that tenant
    unlearner = unlearners(VEIL_UNLEARNER_WORKERS="2")  # likewise
    caller = unlearner_caller(unlearner, "tenant-4")    # its RPCs as that tenant
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from fixtures_db import migrated
from fixtures_store import NanioServer, free_port

from veil_tools import localrun
from veil.client import GatewayClient
from veil.data import load_celeba
from veil.db import Database, DatabaseConfig
from veil.images import decode_image, encode_png
from veil.rpc import ChannelConfig
from services.gateway.state import GatewayState
from veil.store import ObjectStore, StoreConfig, open_store
from veil.unlearning.dataset import import_celeba
from veil.unlearning.manifest import Manifest, ManifestEntry, PinnedObject
from veil.v1 import common_pb2, unlearner_pb2, unlearner_pb2_grpc

TENANTS = [f"tenant-{i}" for i in range(48)]
TOKENS = {tenant: f"token-of-{tenant}-0123456789abcdef" for tenant in TENANTS}
# Test clients retry UNAVAILABLE briefly, then fail.
TEST_CHANNEL = ChannelConfig(retry_max_attempts=2, retry_initial_backoff_seconds=0.05,
                             retry_max_backoff_seconds=0.1)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "a condition"):
    """The first truthy value of predicate(), polled every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def failure(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """The RpcError the call fails with (a server stream is read to its end)."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    return caught.value


class ServiceProcess(localrun.ServiceProcess):
    """A service process (veil_tools.localrun) whose clients are the test tenants'."""

    def client(self, tenant: str) -> GatewayClient:
        return GatewayClient(self.target, TOKENS[tenant], channel_config=TEST_CHANNEL)


def store_env(config: StoreConfig) -> dict[str, str]:
    return {"VEIL_STORE_BACKEND": "s3", "VEIL_S3_ENDPOINT": config.s3_endpoint,
            "VEIL_S3_ACCESS_KEY": config.s3_access_key, "VEIL_S3_SECRET_KEY": config.s3_secret_key,
            "VEIL_S3_SECURE": "false", "VEIL_S3_BUCKET": config.bucket, "VEIL_S3_RETRIES": "2",
            "VEIL_S3_BACKOFF_SECONDS": "0.05"}


@pytest.fixture(scope="session")
def services_store(nanio: NanioServer) -> StoreConfig:
    """The bucket the anonymizer and every gateway of the run share."""
    config = nanio.config(bucket="veil-services")
    open_store(config).ensure_bucket()
    return config


@pytest.fixture(scope="session")
def services_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def anonymizer_service(tiny_model_dir: Path, services_store: StoreConfig,
                       services_logs: Path, tmp_path_factory) -> Iterator[ServiceProcess]:
    service = start_anonymizer(tiny_model_dir, services_store, services_logs / "anonymizer.log",
                               tmp_path_factory.mktemp("model-cache"), sampling_steps=2)
    yield service
    service.stop()


def start_anonymizer(model_dir: Path, store: StoreConfig, log: Path, cache_dir: Path, *,
                     sampling_steps: int, decode_tries: int = 0) -> ServiceProcess:
    """An anonymizer process on the tiny model; more sampling steps make its rounds slower. Its
    edits are unverified unless `decode_tries` is given: the tiny model's classifier refuses many
    of its own decodes, and most tests want every candidate offered."""
    env = {**store_env(store), "VEIL_MODEL_URI": str(model_dir), "VEIL_MODEL_CACHE_DIR": str(cache_dir),
           "VEIL_SAMPLING_STEPS": str(sampling_steps), "VEIL_DECODE_TRIES": str(decode_tries),
           "VEIL_BATCH_MAX_SIZE": "16",
           "VEIL_BATCH_MAX_WAIT_SECONDS": "0.01", "VEIL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
           "VEIL_METRICS_PORT": str(free_port()), "VEIL_LOG_LEVEL": "warning"}
    return ServiceProcess("anonymizer", "veil.v1.Anonymizer", env, log).start(timeout=180)


@pytest.fixture(scope="session")
def gateway_db_url(make_pg_database) -> str:
    """The gateway processes' own database: their background loops (recovery, retention,
    unlearning) act on every tenant's rows, so they must not see other tests' rows."""
    return migrated(make_pg_database())


@pytest.fixture(scope="session")
def gateway_state(gateway_db_url: str) -> Iterator[GatewayState]:
    """The gateways' database, for the tests to read (audit log, rows) as an operator would."""
    state = GatewayState(Database.from_config(DatabaseConfig(url=gateway_db_url)))
    yield state
    state.close()


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    path.write_text(json.dumps({token: tenant for tenant, token in TOKENS.items()}))
    return path


@dataclasses.dataclass
class ServiceFactory:
    """Processes of one service sharing an environment (the run's database, bucket, ...), each on
    ports of its own."""

    name: str
    health_service: str
    base_env: dict[str, str]
    logs: Path
    started: list[ServiceProcess] = dataclasses.field(default_factory=list)

    def __call__(self, **env: str) -> ServiceProcess:
        return self.create(**env).start()

    def create(self, **env: str) -> ServiceProcess:
        """A process not yet started (start, kill and start it again: a restart on the same ports)."""
        full = {**self.base_env, "VEIL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                "VEIL_METRICS_PORT": str(free_port()), **env}
        process = ServiceProcess(self.name, self.health_service, full,
                                 self.logs / f"{self.name}-{len(self.started)}.log")
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


def gateway_factory_of(base_env: dict[str, str], logs: Path) -> ServiceFactory:
    return ServiceFactory("gateway", "veil.v1.Gateway", base_env, logs)


def gateway_base_env(anonymizer: ServiceProcess, store: StoreConfig, db_url: str,
                     tokens: Path) -> dict[str, str]:
    return {**store_env(store), "VEIL_DATABASE_URL": db_url, "VEIL_TENANT_TOKENS_FILE": str(tokens),
            "VEIL_ANONYMIZER_TARGET": anonymizer.target, "VEIL_ANONYMIZER_TIMEOUT_SECONDS": "60",
            "VEIL_MAX_MESSAGE_BYTES": str(4 << 20), "VEIL_UNLEARNING_POLL_SECONDS": "0.2",
            "VEIL_RECOVERY_INTERVAL_SECONDS": "0.5", "VEIL_STREAM_POLL_SECONDS": "0.2",
            "VEIL_LOG_LEVEL": "warning", "VEIL_SHUTDOWN_GRACE_SECONDS": "2",
            # The level table's identity eps (16 at the default level) passes the default cap 10.
            "VEIL_LEDGER_CAP": "100"}


@pytest.fixture(scope="session")
def gateway_factory(anonymizer_service, services_store, gateway_db_url, tokens_file,
                    services_logs) -> Iterator[ServiceFactory]:
    """Gateways that live until the end of the run (use `start_gateway` for a test's own)."""
    factory = gateway_factory_of(gateway_base_env(anonymizer_service, services_store, gateway_db_url,
                                                  tokens_file), services_logs / "shared")
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def gateway(gateway_factory: ServiceFactory) -> ServiceProcess:
    """One gateway shared by the run's tests (each test uses tenants of its own)."""
    return gateway_factory()


@pytest.fixture
def start_gateway(anonymizer_service, services_store, gateway_db_url, tokens_file,
                  services_logs) -> Iterator[Callable[..., ServiceProcess]]:
    """start_gateway(**env): a gateway process of the test's own, stopped at its end."""
    factory = gateway_factory_of(gateway_base_env(anonymizer_service, services_store, gateway_db_url,
                                                  tokens_file), services_logs / "own")
    yield factory
    factory.stop_all()


_unused_tenants = iter(TENANTS)


@pytest.fixture
def new_tenant() -> Callable[[], str]:
    """new_tenant(): a tenant no other test of the run uses (its objects, sessions, ledgers)."""
    return lambda: next(_unused_tenants)


@pytest.fixture(scope="session")
def face_png(tiny_faces: Path) -> list[bytes]:
    """PNG faces of the tiny model's size."""
    return [encode_png(img) for img in load_celeba(tiny_faces, size=16, limit=8).images]


# --- the unlearner ---------------------------------------------------------------------------------

def unlearner_base_env(store: StoreConfig, db_url: str) -> dict[str, str]:
    """Tiny classifiers; fast polls and a short lease, so a killed job is resumed within seconds."""
    return {**store_env(store), "VEIL_DATABASE_URL": db_url, "VEIL_CLASSIFIER_CHANNELS": "4,8",
            "VEIL_CLASSIFIER_EMBEDDING_DIM": "16", "VEIL_UNLEARNER_POLL_SECONDS": "0.1",
            "VEIL_UNLEARNER_HEARTBEAT_SECONDS": "0.2", "VEIL_UNLEARNER_LEASE_SECONDS": "1.5",
            "VEIL_UNLEARNER_WATCH_POLL_SECONDS": "0.1", "VEIL_LOG_LEVEL": "warning",
            "VEIL_SHUTDOWN_GRACE_SECONDS": "5"}


def unlearner_factory_of(store: StoreConfig, db_url: str, logs: Path) -> ServiceFactory:
    return ServiceFactory("unlearner", "veil.v1.Unlearner", unlearner_base_env(store, db_url), logs)


@pytest.fixture
def unlearners(services_store, make_pg_database, services_logs) -> Iterator[ServiceFactory]:
    """unlearners(**env): unlearner processes of the test's own on a fresh database (its URL is
    `unlearners.base_env["VEIL_DATABASE_URL"]`), stopped at its end."""
    factory = unlearner_factory_of(services_store, migrated(make_pg_database(), "unlearner"),
                                   services_logs / "unlearners")
    yield factory
    factory.stop_all()


class UnlearnerCaller:
    """The Unlearner's RPCs called as `tenant` (the metadata the gateway sends), with a deadline."""

    def __init__(self, target: str, tenant: str, timeout: float = 60.0) -> None:
        self.tenant = tenant
        self._channel = grpc.insecure_channel(target)
        self._stub = unlearner_pb2_grpc.UnlearnerStub(self._channel)
        self._timeout = timeout

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=(("x-veil-tenant", self.tenant),),
                                      timeout=self._timeout)

    def wait(self, job_id: str, timeout: float = 60.0) -> unlearner_pb2.Job:
        """The job once it has ended (SUCCEEDED or FAILED)."""
        terminal = (unlearner_pb2.JOB_STATE_SUCCEEDED, unlearner_pb2.JOB_STATE_FAILED)
        return wait_for(lambda: (job := self.GetJob(unlearner_pb2.GetJobRequest(job_id=job_id)))
                        .state in terminal and job, timeout, f"job {job_id} to end")

    def close(self) -> None:
        self._channel.close()


@pytest.fixture
def unlearner_caller() -> Iterator[Callable[[ServiceProcess, str], UnlearnerCaller]]:
    """unlearner_caller(service, tenant): a caller closed at the test's end."""
    opened: list[UnlearnerCaller] = []

    def open_caller(service: ServiceProcess, tenant: str) -> UnlearnerCaller:
        opened.append(UnlearnerCaller(service.target, tenant))
        return opened[-1]

    yield open_caller
    for caller in opened:
        caller.close()


def upload_dataset(store: ObjectStore, faces: Path, prefix: str = "datasets/faces") -> tuple[Manifest, str]:
    """The tiny faces as 16x16 PNGs under `prefix` of `store` (a tenant's view) with their manifest
    (Male and No_Beard protected); returns the manifest and its key."""
    return import_celeba(store, faces, prefix, ["Male", "No_Beard"], size=16)


def train_request(key: str, manifest: Manifest, model: str = "faces", epochs: int = 2,
                  request_id: str = "") -> unlearner_pb2.TrainRequest:
    return unlearner_pb2.TrainRequest(request_id=request_id, model=model, epochs=epochs, seed=1,
                                      manifest=common_pb2.ObjectRef(key=key, sha256=manifest.sha256))


def mirrored(store: ObjectStore, entry: ManifestEntry, prefix: str = "protected") -> PinnedObject:
    """A stand-in protected image of a manifest entry (the original mirrored left to right), stored
    next to the originals; a real image of the same size that differs from the original."""
    image = decode_image(store.get(entry.object.key, expected_sha256=entry.object.sha256))
    name = entry.object.key.rsplit("/", 1)[1]
    info = store.put(f"{prefix}/{name}", encode_png(np.ascontiguousarray(image[:, ::-1])),
                     content_type="image/png")
    return PinnedObject(store.bucket, info.key, info.sha256 or "")


def pair_message(original: PinnedObject, replacement: PinnedObject,
                 session_id: str = "") -> unlearner_pb2.ReplacementPair:
    def ref(r: PinnedObject) -> common_pb2.ObjectRef:
        return common_pb2.ObjectRef(bucket=r.bucket, key=r.key, sha256=r.sha256)

    return unlearner_pb2.ReplacementPair(original=ref(original), replacement=ref(replacement),
                                         session_id=session_id)
