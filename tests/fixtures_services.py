"""The services as real processes on loopback, for the gateway's tests: the anonymizer with the
tiny model (one per test run), gateways on a fresh PostgreSQL database and a nanio S3 bucket.

    gateway = start_gateway(VEIL_LEDGER_CAP="3")       # a process; stopped at the test's end
    with gateway.client("tenant-3") as client: ...     # a GatewayClient of that tenant
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from fixtures_db import migrated
from fixtures_store import NanioServer, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from veil.client import GatewayClient
from veil.data import load_celeba
from veil.db import Database, DatabaseConfig
from veil.images import encode_png
from veil.rpc import ChannelConfig
from veil.sessions import GatewayState
from veil.store import StoreConfig, open_store

ROOT = Path(__file__).resolve().parent.parent
TENANTS = [f"tenant-{i}" for i in range(40)]
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


class ServiceProcess:
    """`python -m services.<name>` with `env`; started, waited for (health SERVING), stopped."""

    def __init__(self, name: str, health_service: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.health_service = health_service
        self.env = env
        self.log = log
        self.port = int(env["VEIL_GRPC_ADDRESS"].rpartition(":")[2])
        self.metrics_port = int(env.get("VEIL_METRICS_PORT", "0"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env}, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}: "
                                       f"{self.log_tail()}")
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=self.health_service),
                                          timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not serving within {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics: (name, sorted labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

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
    env = {**store_env(services_store), "VEIL_MODEL_URI": str(tiny_model_dir),
           "VEIL_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("model-cache")),
           "VEIL_SAMPLING_STEPS": "2", "VEIL_BATCH_MAX_SIZE": "16",
           "VEIL_BATCH_MAX_WAIT_SECONDS": "0.01", "VEIL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
           "VEIL_METRICS_PORT": str(free_port()), "VEIL_LOG_LEVEL": "warning"}
    service = ServiceProcess("anonymizer", "veil.v1.Anonymizer", env,
                             services_logs / "anonymizer.log").start(timeout=180)
    yield service
    service.stop()


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
class GatewayFactory:
    """Gateway processes on the run's database, bucket and anonymizer."""

    base_env: dict[str, str]
    logs: Path
    started: list[ServiceProcess] = dataclasses.field(default_factory=list)

    def __call__(self, **env: str) -> ServiceProcess:
        full = {**self.base_env, "VEIL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                "VEIL_METRICS_PORT": str(free_port()), **env}
        gateway = ServiceProcess("gateway", "veil.v1.Gateway", full,
                                 self.logs / f"gateway-{len(self.started)}.log")
        self.started.append(gateway)
        return gateway.start()

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()


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
                    services_logs) -> Iterator[GatewayFactory]:
    """Gateways that live until the end of the run (use `start_gateway` for a test's own)."""
    factory = GatewayFactory(gateway_base_env(anonymizer_service, services_store, gateway_db_url,
                                              tokens_file), services_logs / "shared")
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def gateway(gateway_factory: GatewayFactory) -> ServiceProcess:
    """One gateway shared by the run's tests (each test uses tenants of its own)."""
    return gateway_factory()


@pytest.fixture
def start_gateway(anonymizer_service, services_store, gateway_db_url, tokens_file,
                  services_logs) -> Iterator[Callable[..., ServiceProcess]]:
    """start_gateway(**env): a gateway process of the test's own, stopped at its end."""
    factory = GatewayFactory(gateway_base_env(anonymizer_service, services_store, gateway_db_url,
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
