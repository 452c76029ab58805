"""Who may name a tenant to the internal services (anonymizer, unlearner).

They act as the tenant named by `x-veil-tenant` metadata; only the gateway, which authenticates
its callers, may send it. With VEIL_INTERNAL_TOKEN_FILE set, the internal services honour the
header only from a caller that presents that file's secret in `x-veil-internal-token`
(UNAUTHENTICATED otherwise), and the gateway presents it on every call. `make run`
(veil_tools.localrun) writes a fresh secret per run; in Kubernetes it comes from a Secret. Mutual TLS
(veil.rpc.channel, veil.rpc.server) is the stronger option: it authenticates the connection.

    server = VeilServer(config, servicers, interceptors=InternalAuthConfig.load().server_interceptors())
    channel = open_channel(target, channels, InternalAuthConfig.load().client_interceptors())
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from veil.config import env_field
from veil.errors import ConfigError, Unauthenticated
from veil.rpc.config import EnvLoadable
from veil.rpc.context import TENANT_KEY, metadata_value
from veil.rpc.interceptors import AroundInterceptor, RpcCall

INTERNAL_TOKEN_KEY = "x-veil-internal-token"
MIN_SECRET_CHARS = 32


def read_secret(path: str) -> str:
    """The secret of a token file (surrounding whitespace dropped); ConfigError when unreadable
    or shorter than MIN_SECRET_CHARS."""
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"VEIL_INTERNAL_TOKEN_FILE={path!r}: cannot read it ({exc})") from None
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"VEIL_INTERNAL_TOKEN_FILE={path!r}: the secret must have at least "
                          f"{MIN_SECRET_CHARS} characters")
    return secret


@dataclass(frozen=True)
class InternalAuthConfig(EnvLoadable):
    internal_token_file: str | None = env_field(
        "VEIL_INTERNAL_TOKEN_FILE", None,
        doc="file holding the secret shared by the gateway and the internal services: the "
            "anonymizer and unlearner honour x-veil-tenant only from callers presenting it, the "
            "gateway presents it; unset: the header is trusted (use mutual TLS and NetworkPolicy)")

    def secret(self) -> str | None:
        return None if self.internal_token_file is None else read_secret(self.internal_token_file)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """What an internal service installs: the check, when a secret is configured."""
        secret = self.secret()
        return [] if secret is None else [InternalCallerInterceptor(secret)]

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """What the gateway's channels install: the secret on every call, when configured."""
        secret = self.secret()
        return [] if secret is None else presenting(secret)


class InternalCallerInterceptor(AroundInterceptor):
    """Refuses calls naming a tenant without presenting the secret. Calls without a tenant
    (health, GetModelInfo) pass: they act for no one."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    @asynccontextmanager
    async def around(self, call: RpcCall) -> AsyncIterator[None]:
        metadata = call.context.invocation_metadata()
        if metadata_value(metadata, TENANT_KEY) is not None:
            presented = (metadata_value(metadata, INTERNAL_TOKEN_KEY) or "").encode()
            if not hmac.compare_digest(presented, self._secret):
                raise Unauthenticated(f"{TENANT_KEY} is honoured only from the gateway: present the "
                                      f"internal secret in {INTERNAL_TOKEN_KEY}")
        yield


class PresentSecret:
    """Adds `x-veil-internal-token` to a call's metadata. A channel files each interceptor under
    the first arity it implements, so each arity gets a subclass of its own (`presenting`)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), (INTERNAL_TOKEN_KEY, self._secret))
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)


class _UnaryUnary(PresentSecret, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(PresentSecret, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(PresentSecret, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(PresentSecret, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def presenting(secret: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors adding the secret to every call of a channel, whatever its arity."""
    return [kind(secret) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
