"""Callers: `authorization: Bearer <token>` metadata -> the tenant the token maps to.

The token file (VEIL_TENANT_TOKENS_FILE) is a JSON object {"<token>": "<tenant id>", ...}; in a
cluster it is a mounted Secret, which the kubelet updates in place, so the file is re-read when
its modification time changes (a file that turns unreadable keeps the last good mapping).

Tokens are held as sha256 digests only; the audit log names a caller by a prefix of that digest
("token:1a2b3c..."), never by the token. `AuthInterceptor` authenticates every veil.v1.Gateway
call before the servicer runs (health checks and reflection stay open for probes) and exposes the
caller through `current_caller()`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from veil.errors import ConfigError, InvalidArgument, Unauthenticated
from veil.rpc.context import metadata_value
from veil.rpc.interceptors import AroundInterceptor, RpcCall
from veil.store.keys import validate_tenant_id

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
GATEWAY_SERVICE = "veil.v1.Gateway"
MIN_TOKEN_LENGTH = 16


@dataclasses.dataclass(frozen=True)
class Caller:
    tenant: str
    actor: str          # "token:<first 16 hex of the token's sha256>", for the audit log


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("veil_caller", default=None)


def current_caller() -> Caller:
    """The authenticated caller of the RPC being served."""
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller for this call")
    return caller


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """{sha256(token): tenant} from the file's JSON; ConfigError naming what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: expected a non-empty JSON object of token -> tenant")
    tokens = {}
    for token, tenant in raw.items():
        if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
            raise ConfigError(f"{source}: a token must be at least {MIN_TOKEN_LENGTH} printable "
                              f"characters without spaces")
        try:
            tokens[_digest(token)] = validate_tenant_id(tenant)
        except InvalidArgument as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return tokens


class TenantTokens:
    """The token file, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._tokens = self._load()

    def _load(self) -> dict[str, str]:
        with open(self._path, encoding="utf-8") as f:
            self._mtime = os.fstat(f.fileno()).st_mtime
            return parse_tokens(f.read(), self._path)

    def _refresh(self) -> None:
        try:
            changed = os.stat(self._path).st_mtime != self._mtime
        except OSError:
            return
        if changed:
            with self._lock:
                try:
                    self._tokens = self._load()
                    log.info("reloaded the tenant tokens from %s", self._path)
                except (OSError, ConfigError) as exc:
                    log.error("keeping the previous tenant tokens: %s", exc)

    def caller(self, authorization: str | None) -> Caller:
        """The caller of an `authorization` metadata value; Unauthenticated when missing,
        malformed or unknown."""
        if not authorization:
            raise Unauthenticated(f"missing '{AUTHORIZATION_KEY}: Bearer <token>' metadata")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        self._refresh()
        digest = _digest(token.strip())
        tenant = self._tokens.get(digest)
        if tenant is None:
            raise Unauthenticated("unknown token")
        return Caller(tenant=tenant, actor=f"token:{digest[:16]}")


class AuthInterceptor(AroundInterceptor):
    """Authenticates every call of veil.v1.Gateway; installed inside the error mapping, so a
    refusal reaches the caller as UNAUTHENTICATED."""

    def __init__(self, tokens: TenantTokens) -> None:
        self._tokens = tokens

    @asynccontextmanager
    async def around(self, call: RpcCall) -> AsyncIterator[None]:
        if call.service != GATEWAY_SERVICE:
            yield
            return
        authorization = metadata_value(call.context.invocation_metadata(), AUTHORIZATION_KEY)
        # Each RPC runs in a fresh contextvars.Context (see RequestIdInterceptor): no reset.
        _caller.set(self._tokens.caller(authorization))
        yield
