"""Server configuration from environment variables, validated at start-up.

Each service passes its own defaults (ports), the environment still overrides them:

    config = ServerConfig.load(grpc_address="[::]:50051", metrics_port=9101)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from veil.config import env_field, from_env
from veil.errors import ConfigError
from veil.log import LEVELS

T = TypeVar("T")
MIB = 1 << 20
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1


def parse_address(name: str, address: str) -> tuple[str, int]:
    """(host, port) of "host:port", "[v6]:port" or "[::]:port"; ConfigError naming `name` otherwise."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}={address!r}: expected host:port, e.g. 0.0.0.0:50051 or [::]:50051")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ConfigError(f"{name}={address!r}: malformed [IPv6] host")
    elif ":" in host:
        raise ConfigError(f"{name}={address!r}: put an IPv6 host in brackets, e.g. [::1]:50051")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{name}={address!r}: port must be a number in 0..65535")
    return host, int(port_text)


def check_tls_files(files: Mapping[str, str | None]) -> None:
    """VEIL_TLS_CERT_FILE and VEIL_TLS_KEY_FILE set together; every file given (by variable) readable."""
    if (files["VEIL_TLS_CERT_FILE"] is None) != (files["VEIL_TLS_KEY_FILE"] is None):
        raise ConfigError("VEIL_TLS_CERT_FILE and VEIL_TLS_KEY_FILE must be set together")
    for name, path in files.items():
        if path is not None and (not os.path.isfile(path) or not os.access(path, os.R_OK)):
            raise ConfigError(f"{name}={path!r}: not a readable file")


class EnvLoadable:
    """`Config.load(environ, **defaults)`: from the environment, with a service's own defaults
    (field name -> value) that the environment still overrides."""

    @classmethod
    def load(cls: type[T], environ: Mapping[str, str] | None = None, **defaults: Any) -> T:
        return from_env(cls, environ, defaults)


@dataclass(frozen=True)
class ServerConfig(EnvLoadable):
    grpc_address: str = env_field("VEIL_GRPC_ADDRESS", "[::]:50051", doc="gRPC listen address host:port")
    metrics_host: str = env_field("VEIL_METRICS_HOST", "0.0.0.0", doc="Prometheus /metrics listen host")
    metrics_port: int = env_field("VEIL_METRICS_PORT", 9100, min=0, max=65535,
                                  doc="Prometheus /metrics port; 0 disables the endpoint")
    max_message_bytes: int = env_field("VEIL_MAX_MESSAGE_BYTES", 64 * MIB, min=1024, max=MAX_GRPC_MESSAGE_BYTES,
                                       doc="largest gRPC message sent or received")
    shutdown_grace_seconds: float = env_field("VEIL_SHUTDOWN_GRACE_SECONDS", 30.0, min=0.0, max=3600.0,
                                              doc="on SIGTERM, how long in-flight RPCs may finish")
    tls_cert_file: str | None = env_field("VEIL_TLS_CERT_FILE", None,
                                          doc="PEM certificate chain of this server; set with the key => TLS")
    tls_key_file: str | None = env_field("VEIL_TLS_KEY_FILE", None, doc="PEM private key of this server")
    tls_client_ca_file: str | None = env_field("VEIL_TLS_CLIENT_CA_FILE", None,
                                               doc="PEM CA of client certificates; set => mutual TLS required")
    log_level: str = env_field("VEIL_LOG_LEVEL", "info", choices=LEVELS, doc="log level")

    def __post_init__(self) -> None:
        parse_address("VEIL_GRPC_ADDRESS", self.grpc_address)
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError("VEIL_TLS_CLIENT_CA_FILE (mutual TLS) needs VEIL_TLS_CERT_FILE and VEIL_TLS_KEY_FILE")
        check_tls_files({"VEIL_TLS_CERT_FILE": self.tls_cert_file, "VEIL_TLS_KEY_FILE": self.tls_key_file,
                         "VEIL_TLS_CLIENT_CA_FILE": self.tls_client_ca_file})
