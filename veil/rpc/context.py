"""What a servicer reads from the call: the request id and the tenant.

- `request_id()`: the current RPC's id (from the caller's `x-request-id` metadata, or generated);
  also on every log line and echoed to the caller in the initial metadata.
- `tenant_id(context)`: the tenant named by `x-veil-tenant` metadata. Services behind the gateway
  trust it from callers presenting the internal secret (veil.rpc.internal; the gateway
  authenticates its callers and sets it); mutual TLS authenticates the connection as well.
- `outgoing_metadata(tenant)`: metadata for a downstream call, carrying both along.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import grpc

from veil.errors import Unauthenticated
from veil.log import request_id_var
from veil.store.keys import validate_tenant_id

REQUEST_ID_KEY = "x-request-id"
TENANT_KEY = "x-veil-tenant"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Metadata = Sequence[tuple[str, str | bytes]]


def request_id() -> str | None:
    """The id of the RPC being served (None outside an RPC)."""
    return request_id_var.get()


def accepted_request_id(candidate: str | None) -> str:
    """The caller's id when well-formed (1-128 of [A-Za-z0-9._:-]), else a fresh one."""
    if candidate is not None and _REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def metadata_value(metadata: Metadata | None, key: str) -> str | None:
    """The first value of `key` in invocation metadata (keys are lowercase on the wire)."""
    for name, value in metadata or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


def tenant_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's tenant from `x-veil-tenant`; Unauthenticated when absent, InvalidArgument when malformed."""
    value = metadata_value(context.invocation_metadata(), TENANT_KEY)
    if value is None:
        raise Unauthenticated(f"missing {TENANT_KEY} metadata")
    return validate_tenant_id(value)


def outgoing_metadata(tenant: str | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call: the current request id and, if given, the tenant."""
    metadata: list[tuple[str, str]] = []
    current = request_id()
    if current is not None:
        metadata.append((REQUEST_ID_KEY, current))
    if tenant is not None:
        metadata.append((TENANT_KEY, validate_tenant_id(tenant)))
    return tuple(metadata)
