"""The gRPC server every veil service runs.

    async def main() -> None:
        config = ServerConfig.load(grpc_address="[::]:50051", metrics_port=9101)
        setup_logging(config.log_level)
        server = VeilServer(config, servicers=[(add_AnonymizerServicer_to_server, servicer)])
        await server.start()             # listening; health NOT_SERVING
        ...load the model...
        await server.set_serving(True)   # health SERVING
        await server.wait_for_termination()

    if __name__ == "__main__":
        sys.exit(run_service(main, name="veil-anonymizer"))

The server adds grpc.health.v1 (overall "" and one entry per service, NOT_SERVING until
`set_serving(True)`), reflection, the interceptors of veil.rpc.interceptors, message size limits,
TLS or mutual TLS from the configured files, and the Prometheus endpoint. On SIGTERM or SIGINT it
shuts down gracefully: health goes NOT_SERVING, new RPCs are refused, in-flight RPCs get up to
VEIL_SHUTDOWN_GRACE_SECONDS to finish, then the rest are cancelled. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1.health import aio as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from veil.errors import ConfigError
from veil.metrics import MetricsServer, register_gpu_collector, start_metrics_server
from veil.rpc.config import ServerConfig
from veil.rpc.interceptors import (HEALTH_SERVICE, AccessLogInterceptor, ErrorMappingInterceptor,
                                   MetricsInterceptor, RequestIdInterceptor)

log = logging.getLogger("veil.rpc.server")

AddServicer = Callable[[Any, grpc.aio.Server], None]
# Clients (veil.rpc.channel) ping every VEIL_GRPC_KEEPALIVE_SECONDS >= 10 s; accept that.
MIN_CLIENT_PING_INTERVAL_MS = 10_000


class _Registrar:
    """Passed to generated add_*_to_server functions to learn the service names they register."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.names: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.names.extend(h.service_name() for h in handlers if hasattr(h, "service_name"))
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(name, handlers)


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured files; mutual TLS when a client CA is set."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())],
        root_certificates=client_ca, require_client_auth=client_ca is not None)


class VeilServer:
    def __init__(self, config: ServerConfig, servicers: Sequence[tuple[AddServicer, object]],
                 interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> None:
        self.config = config
        self._servicers = list(servicers)
        self._extra_interceptors = list(interceptors)
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._metrics: MetricsServer | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._shutdown_started = asyncio.Event()
        self._stopped = asyncio.Event()
        self.service_names: list[str] = []
        self.port: int | None = None

    @property
    def metrics_port(self) -> int | None:
        return self._metrics.port if self._metrics else None

    async def start(self) -> None:
        """Bind and start serving (health NOT_SERVING); ConfigError when the address or TLS files
        are unusable."""
        config = self.config
        server = grpc.aio.server(
            interceptors=[RequestIdInterceptor(), AccessLogInterceptor(), MetricsInterceptor(),
                          ErrorMappingInterceptor(), *self._extra_interceptors],
            options=[("grpc.max_send_message_length", config.max_message_bytes),
                     ("grpc.max_receive_message_length", config.max_message_bytes),
                     ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared
                     ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS)])
        registrar = _Registrar(server)
        for add, servicer in self._servicers:
            add(servicer, registrar)
        self.service_names = registrar.names
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", *self.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (*self.service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server)

        try:
            credentials = server_credentials(config)
        except OSError as exc:
            raise ConfigError(f"cannot read TLS files: {exc}") from None
        try:
            if credentials is None:
                self.port = server.add_insecure_port(config.grpc_address)
            else:
                self.port = server.add_secure_port(config.grpc_address, credentials)
        except RuntimeError as exc:
            raise ConfigError(f"VEIL_GRPC_ADDRESS={config.grpc_address!r}: cannot listen ({exc})") from None
        try:
            self._metrics = start_metrics_server(config.metrics_port, config.metrics_host)
        except OSError as exc:
            raise ConfigError(f"VEIL_METRICS_PORT={config.metrics_port}: cannot listen ({exc})") from None
        register_gpu_collector()
        await server.start()
        self._server = server
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("serving %s on port %d (%s)", ", ".join(self.service_names), self.port,
                 "mutual TLS" if config.tls_client_ca_file else "TLS" if credentials else "plaintext")

    async def set_serving(self, serving: bool, service: str | None = None) -> None:
        """Health of one service, or of all and the overall "" entry when `service` is None."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names) if service is None else (service,):
            await self._health.set(name, status)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping is None:
            log.info("received %s: shutting down gracefully", sig.name)
            self._stopping = asyncio.create_task(self._shutdown(self.config.shutdown_grace_seconds))
        elif self._server is not None:
            log.warning("received %s again: stopping now", sig.name)
            asyncio.create_task(self._server.stop(0))

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown (see the module docstring); safe to call more than once."""
        if self._stopping is None:
            grace = self.config.shutdown_grace_seconds if grace is None else grace
            self._stopping = asyncio.create_task(self._shutdown(grace))
        await asyncio.shield(self._stopping)

    async def _shutdown(self, grace: float) -> None:
        self._shutdown_started.set()
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if self._metrics is not None:
            self._metrics.close()
        log.info("stopped")
        self._stopped.set()

    async def wait_for_shutdown(self) -> None:
        """Return as soon as a graceful shutdown begins (while in-flight RPCs still drain): the
        moment to stop background work that outlives RPCs."""
        await self._shutdown_started.wait()

    async def wait_for_termination(self) -> None:
        """Return once the server has shut down (after a signal or `stop()`)."""
        await self._stopped.wait()


def run_service(main: Callable[[], Awaitable[None]], *, name: str) -> int:
    """Run a service's async `main`; a ConfigError prints a clear message and returns exit code 2."""
    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0
