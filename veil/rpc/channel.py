"""Client channels to veil services (the Python client, gateway -> anonymizer/unlearner).

    channel = open_channel("anonymizer:50051", ChannelConfig.load())
    stub = anonymizer_pb2_grpc.AnonymizerStub(channel)
    info = await stub.GetModelInfo(GetModelInfoRequest(), metadata=outgoing_metadata(tenant))

TLS when VEIL_TLS_CA_FILE is set (the CA that signed the servers), presenting this process's
VEIL_TLS_CERT_FILE/VEIL_TLS_KEY_FILE as client certificate for mutual TLS (issue certificates with
both serverAuth and clientAuth usages). Calls failing with UNAVAILABLE are retried by gRPC with
exponential backoff; RPCs carry request ids, so a retried request is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from veil.config import env_field
from veil.rpc.config import MAX_GRPC_MESSAGE_BYTES, MIB, EnvLoadable, check_tls_files


@dataclass(frozen=True)
class ChannelConfig(EnvLoadable):
    tls_ca_file: str | None = env_field("VEIL_TLS_CA_FILE", None,
                                        doc="PEM CA that signs the servers this process calls; set => TLS")
    tls_cert_file: str | None = env_field("VEIL_TLS_CERT_FILE", None,
                                          doc="PEM certificate presented as client certificate (mutual TLS)")
    tls_key_file: str | None = env_field("VEIL_TLS_KEY_FILE", None, doc="PEM key of the client certificate")
    max_message_bytes: int = env_field("VEIL_MAX_MESSAGE_BYTES", 64 * MIB, min=1024, max=MAX_GRPC_MESSAGE_BYTES,
                                       doc="largest gRPC message sent or received")
    retry_max_attempts: int = env_field("VEIL_GRPC_RETRY_MAX_ATTEMPTS", 4, min=1, max=5,
                                        doc="attempts of a call failing with UNAVAILABLE (1: no retries; gRPC caps at 5)")
    retry_initial_backoff_seconds: float = env_field("VEIL_GRPC_RETRY_INITIAL_BACKOFF_SECONDS", 0.2,
                                                     min=0.001, max=60.0, doc="first retry delay")
    retry_max_backoff_seconds: float = env_field("VEIL_GRPC_RETRY_MAX_BACKOFF_SECONDS", 5.0, min=0.001,
                                                 max=300.0, doc="cap of one retry delay")
    keepalive_seconds: float = env_field("VEIL_GRPC_KEEPALIVE_SECONDS", 30.0, min=10.0, max=3600.0,
                                         doc="HTTP/2 keepalive ping interval on open calls")

    def __post_init__(self) -> None:
        check_tls_files({"VEIL_TLS_CERT_FILE": self.tls_cert_file, "VEIL_TLS_KEY_FILE": self.tls_key_file,
                         "VEIL_TLS_CA_FILE": self.tls_ca_file})


def service_config(config: ChannelConfig) -> str:
    """gRPC service config: every method retried on UNAVAILABLE with exponential backoff
    (retry_max_attempts 1 turns retries off; gRPC rejects a retry policy of fewer than 2), and
    calls spread round-robin over every address the target resolves to (a headless Kubernetes
    Service resolves to each ready pod)."""
    method: dict[str, Any] = {"name": [{}]}
    if config.retry_max_attempts > 1:
        method["retryPolicy"] = {
            "maxAttempts": config.retry_max_attempts,
            "initialBackoff": f"{config.retry_initial_backoff_seconds}s",
            "maxBackoff": f"{config.retry_max_backoff_seconds}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [method], "loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(config: ChannelConfig) -> list[tuple[str, Any]]:
    """Message limits, keepalive and the retry service config of every veil client channel."""
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_seconds * 1000)),
        # A live peer acks a ping within milliseconds; a hung one (stopped, deadlocked) is
        # declared gone, failing its open calls with UNAVAILABLE, 5 s after a ping.
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(config)),
    ]


def channel_credentials(config: ChannelConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials when the config names a CA (with a client certificate: mutual TLS)."""
    if config.tls_ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(config.tls_ca_file).read_bytes(),
        private_key=Path(config.tls_key_file).read_bytes() if config.tls_key_file else None,
        certificate_chain=Path(config.tls_cert_file).read_bytes() if config.tls_cert_file else None)


def open_channel(target: str, config: ChannelConfig | None = None,
                 interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
    """An aio channel to `target` (host:port); secure when the config names a CA."""
    config = config or ChannelConfig()
    credentials = channel_credentials(config)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=channel_options(config),
                                         interceptors=list(interceptors))
    return grpc.aio.secure_channel(target, credentials, options=channel_options(config),
                                   interceptors=list(interceptors))


def open_sync_channel(target: str, config: ChannelConfig | None = None) -> grpc.Channel:
    """The blocking twin of `open_channel`, for synchronous clients (veil.client)."""
    config = config or ChannelConfig()
    credentials = channel_credentials(config)
    if credentials is None:
        return grpc.insecure_channel(target, options=channel_options(config))
    return grpc.secure_channel(target, credentials, options=channel_options(config))
