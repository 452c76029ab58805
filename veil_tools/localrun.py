"""`python -m veil_tools.localrun` (`make run`): the three services on loopback, embedded default.

The embedded default is a local-directory object store (`<var>/objects`), one SQLite database
per service (`<var>/gateway.db`, `<var>/unlearner.db`; each service owns its tables, see
veil.db), a tenant token file (`<var>/tokens.json`, one dev token for tenant "dev", kept across
runs so `VEIL_TOKEN` stays valid), a secret shared by the gateway and the internal services
(`<var>/internal.token`, owner-only, new each run: the anonymizer and the unlearner act for a
tenant only on calls presenting it, see veil.rpc.internal) and the shipped model
`models/diffae-synth32`. Start-up
migrates both databases (`python -m veil.db migrate --service ...`, as the migration Job does),
starts the services as subprocesses (logs in `<var>/logs/`), waits until each reports SERVING
and prints the targets, the token and the /metrics URLs. Ctrl-C or SIGTERM stops them
gracefully: the gateway first (its in-flight rounds still reach the anonymizer), then the rest.

The demo (veil_tools.demo) and the gateway benchmark start the same launcher in-process:

    with LocalServices(Path("out/var"), ports="free") as services:
        with services.client() as client: ...
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from veil.client import GatewayClient
from veil.config import from_env
from veil.diffusion import DEFAULT_MODEL_DIR
from veil.errors import FailedPrecondition, InvalidArgument, Unavailable
from veil.rpc import open_sync_channel
from veil.store import ObjectStore, StoreConfig, open_store
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
DEV_TENANT = "dev"
# (name, sorted labels) -> value: one scrape of a /metrics endpoint.
MetricSamples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (it may be taken before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # python -m services.<name>
    health_service: str
    grpc_port: int  # the defaults of `make run`; ports="free" picks others
    metrics_port: int
    has_database: bool


SERVICES = (
    ServiceSpec("anonymizer", "veil.v1.Anonymizer", 50051, 9101, has_database=False),
    ServiceSpec("unlearner", "veil.v1.Unlearner", 50052, 9102, has_database=True),
    ServiceSpec("gateway", "veil.v1.Gateway", 50050, 9100, has_database=True),
)


def scrape_metrics(url: str, timeout: float = 10.0) -> MetricSamples:
    """Every sample of a Prometheus text endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class ServiceProcess:
    """`python -m services.<name>` with `env` (VEIL_GRPC_ADDRESS and VEIL_METRICS_PORT among it):
    spawned, waited for (health SERVING), stopped with SIGTERM or killed."""

    def __init__(self, name: str, health_service: str, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.health_service = health_service
        self.env = dict(env)
        self.log = log
        self.port = int(self.env["VEIL_GRPC_ADDRESS"].rpartition(":")[2])
        self.metrics_port = int(self.env.get("VEIL_METRICS_PORT", "0"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def spawn(self) -> None:
        """Start the process (its own session, so a terminal's Ctrl-C reaches only the launcher,
        which then stops the services in order)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                env={**os.environ, **self.env, "PYTHONPATH": path}, stdout=log, stderr=log,
                start_new_session=True)

    def wait_serving(self, timeout: float) -> None:
        """Return once health reports SERVING; Unavailable (with the log's tail) if the process
        exits or is not serving within `timeout` seconds."""
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise Unavailable(f"{self.name} exited with status {self.process.returncode}:\n"
                                      f"{self.log_tail()}")
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=self.health_service),
                                          timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise Unavailable(f"{self.name} not serving within {timeout:g} s:\n{self.log_tail()}")

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        self.spawn()
        try:
            self.wait_serving(timeout)
        except Unavailable:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM: the service drains in-flight RPCs (VEIL_SHUTDOWN_GRACE_SECONDS) and exits."""
        if self.running:
            self.process.terminate()  # type: ignore[union-attr]

    def wait(self, timeout: float) -> None:
        """Wait for the exit; SIGKILL after `timeout` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            self.process.wait(timeout=30)  # type: ignore[union-attr]

    def stop(self, timeout: float = 20.0) -> None:
        self.terminate()
        self.wait(timeout)

    def metrics(self) -> MetricSamples:
        return scrape_metrics(self.metrics_url)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)


def model_info(anonymizer_target: str) -> anonymizer_pb2.ModelInfo:
    """The anonymizer's model: version, image size, attributes, levels."""
    with open_sync_channel(anonymizer_target) as channel:
        return anonymizer_pb2_grpc.AnonymizerStub(channel).GetModelInfo(
            anonymizer_pb2.GetModelInfoRequest(), timeout=30)


def write_owner_only(path: Path, text: str) -> None:
    """`text` in `path`, readable by this user only from the start (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


def new_internal_secret(path: Path) -> None:
    """A fresh random secret for the gateway and the internal services (veil.rpc.internal)."""
    write_owner_only(path, secrets.token_urlsafe(32) + "\n")


def dev_token(tokens_file: Path) -> str:
    """The token of tenant "dev" in `tokens_file`, written (owner-only) when there is none."""
    tokens: dict[str, str] = {}
    if tokens_file.exists():
        try:
            tokens = json.loads(tokens_file.read_text())
        except json.JSONDecodeError as exc:
            raise FailedPrecondition(f"{tokens_file}: not JSON ({exc}); delete it to get a new "
                                     f"dev token") from None
        if not isinstance(tokens, dict):
            raise FailedPrecondition(f"{tokens_file}: expected a JSON object token -> tenant")
        for token, tenant in tokens.items():
            if tenant == DEV_TENANT:
                return token
    token = f"dev-{secrets.token_hex(16)}"
    tokens[token] = DEV_TENANT
    write_owner_only(tokens_file, json.dumps(tokens, indent=2) + "\n")
    return token


class LocalServices:
    """The three services on 127.0.0.1 with their state under `var_dir`.

    `ports`: "default" (50050-50052, metrics 9100-9102, what the CLI's defaults expect) or
    "free" (any unused ports: the demo and the benchmark, beside a running `make run`).
    `env` adds or replaces variables of one service (by name), e.g. the ledger cap of the
    gateway; variables of the caller's environment apply to every service unless set here.
    """

    def __init__(self, var_dir: Path, *, ports: Literal["default", "free"] = "default",
                 model_uri: str | None = None, env: Mapping[str, Mapping[str, str]] | None = None,
                 log_level: str = "info", start_timeout: float = 180.0) -> None:
        unknown = set(env or {}) - {spec.name for spec in SERVICES}
        if unknown:
            raise InvalidArgument(f"env for unknown services {sorted(unknown)}; the services are "
                                  f"{', '.join(spec.name for spec in SERVICES)}")
        self.var_dir = var_dir.resolve()
        self.model_uri = model_uri or str(DEFAULT_MODEL_DIR)
        self.start_timeout = start_timeout
        self.tokens_file = self.var_dir / "tokens.json"
        self.internal_secret_file = self.var_dir / "internal.token"
        self.token = ""
        self.processes: dict[str, ServiceProcess] = {}
        targets = {spec.name: (spec.grpc_port, spec.metrics_port) if ports == "default"
                   else (free_port(), free_port()) for spec in SERVICES}
        common = {"VEIL_STORE_BACKEND": "local", "VEIL_STORE_ROOT": str(self.var_dir / "objects"),
                  "VEIL_METRICS_HOST": "127.0.0.1", "VEIL_LOG_LEVEL": log_level,
                  "VEIL_INTERNAL_TOKEN_FILE": str(self.internal_secret_file)}
        own = {
            "anonymizer": {"VEIL_MODEL_URI": self.model_uri,
                           "VEIL_MODEL_CACHE_DIR": str(self.var_dir / "model-cache")},
            "unlearner": {},
            "gateway": {"VEIL_TENANT_TOKENS_FILE": str(self.tokens_file),
                        "VEIL_ANONYMIZER_TARGET": f"127.0.0.1:{targets['anonymizer'][0]}",
                        "VEIL_UNLEARNER_TARGET": f"127.0.0.1:{targets['unlearner'][0]}"},
        }
        for spec in SERVICES:
            grpc_port, metrics_port = targets[spec.name]
            service_env = {**common, **own[spec.name],
                           "VEIL_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
                           "VEIL_METRICS_PORT": str(metrics_port)}
            if spec.has_database:
                service_env["VEIL_DATABASE_URL"] = self.database_url(spec.name)
            service_env.update((env or {}).get(spec.name, {}))
            self.processes[spec.name] = ServiceProcess(
                spec.name, spec.health_service, service_env, self.var_dir / "logs" / f"{spec.name}.log")

    def database_url(self, service: str) -> str:
        return f"sqlite:///{self.var_dir / f'{service}.db'}"

    @property
    def gateway(self) -> ServiceProcess:
        return self.processes["gateway"]

    @property
    def anonymizer(self) -> ServiceProcess:
        return self.processes["anonymizer"]

    @property
    def unlearner(self) -> ServiceProcess:
        return self.processes["unlearner"]

    def migrate(self) -> None:
        """`python -m veil.db migrate --service NAME` for every service with tables."""
        for spec in SERVICES:
            if not spec.has_database:
                continue
            process = self.processes[spec.name]
            result = subprocess.run(
                [sys.executable, "-m", "veil.db", "migrate", "--service", spec.name],
                cwd=ROOT, env={**os.environ, **process.env}, capture_output=True, text=True)
            if result.returncode != 0:
                raise FailedPrecondition(f"migrating {spec.name} failed: {result.stderr.strip()}")

    def start(self) -> LocalServices:
        """Migrate, write the token file and the internal secret, start every service and wait
        until all serve; on any failure the services already started are stopped again."""
        (self.var_dir / "objects").mkdir(parents=True, exist_ok=True)
        try:
            self.migrate()
            self.token = dev_token(self.tokens_file)
            new_internal_secret(self.internal_secret_file)
            for process in self.processes.values():
                process.spawn()
            for process in self.processes.values():
                process.wait_serving(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM to the gateway, then to the services it calls; SIGKILL after `timeout` s."""
        self.gateway.stop(timeout)
        downstream = [p for name, p in self.processes.items() if name != "gateway"]
        for process in downstream:
            process.terminate()
        for process in downstream:
            process.wait(timeout)

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def exited(self) -> list[ServiceProcess]:
        """Services that are no longer running."""
        return [p for p in self.processes.values() if p.process is not None and not p.running]

    def client(self) -> GatewayClient:
        """A gateway client of the dev tenant."""
        return GatewayClient(self.gateway.target, self.token)

    def model_info(self) -> anonymizer_pb2.ModelInfo:
        return model_info(self.anonymizer.target)

    def store(self) -> ObjectStore:
        """The object store the services share (an operator's access: every tenant's keys)."""
        return open_store(from_env(StoreConfig, {**os.environ, **self.gateway.env}))

    def metrics(self) -> dict[str, MetricSamples]:
        return {name: process.metrics() for name, process in self.processes.items()}

    def summary(self) -> str:
        lines = [f"veil services on loopback (state in {self.var_dir}):"]
        for name, process in self.processes.items():
            lines.append(f"  {name:<10} {process.target:<16} metrics {process.metrics_url}")
        lines += [f"  model      {self.model_uri}",
                  f"  logs       {self.var_dir / 'logs'}",
                  "For the CLI (tenant dev):",
                  f"  export VEIL_GATEWAY_TARGET={self.gateway.target}",
                  f"  export VEIL_TOKEN={self.token}"]
        return "\n".join(lines)


def serve_until_signal(services: LocalServices) -> int:
    """Block until SIGINT/SIGTERM (status 0) or until a service dies (status 1)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        if dead := services.exited():
            for process in dead:
                print(f"{process.name} exited with status {process.process.returncode}; its log:\n"  # type: ignore[union-attr]
                      f"{process.log_tail()}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.localrun",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--var", type=Path, default=Path("var"),
                        help="state folder: objects, databases, tokens, logs (default: ./var)")
    parser.add_argument("--model", default=None,
                        help="VEIL_MODEL_URI of the anonymizer (default: models/diffae-synth32)")
    parser.add_argument("--free-ports", action="store_true",
                        help="pick unused ports instead of 50050-50052 / 9100-9102")
    args = parser.parse_args(argv)
    services = LocalServices(args.var, ports="free" if args.free_ports else "default",
                             model_uri=args.model)
    print("migrating and starting anonymizer, unlearner and gateway ...", flush=True)
    try:
        services.start()
    except (FailedPrecondition, Unavailable) as exc:
        print(f"veil_tools.localrun: {exc}", file=sys.stderr)
        return 1
    try:
        print(services.summary())
        print("Ctrl-C stops them.", flush=True)
        status = serve_until_signal(services)
    finally:
        print("stopping ...", flush=True)
        services.stop()
    print("stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
