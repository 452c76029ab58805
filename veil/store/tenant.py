"""A tenant's view of a store: every key lives under `tenants/<tenant_id>/`.

Keys given to and returned by the view are relative to that prefix (as in ObjectRef.key). Key
validation (no '..', absolute paths, backslashes, NUL or control characters, empty segments)
happens before the prefix is added, so no key can name another tenant's object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal

from veil.errors import FailedPrecondition, InvalidArgument, quoted
from veil.store.base import ObjectInfo, ObjectStore, PutData
from veil.store.keys import MAX_KEY_BYTES, tenant_prefix


class TenantStore(ObjectStore):
    def __init__(self, inner: ObjectStore, tenant_id: str) -> None:
        self._inner = inner
        self._prefix = tenant_prefix(tenant_id)
        self.tenant_id = tenant_id

    @property
    def bucket(self) -> str:
        return self._inner.bucket

    @property
    def prefix(self) -> str:
        """Where this tenant's keys live in the bucket, e.g. "tenants/acme/"."""
        return self._prefix

    def __repr__(self) -> str:
        return f"TenantStore({self._inner!r}, tenant_id={self.tenant_id!r})"

    def ensure_bucket(self) -> None:
        self._inner.ensure_bucket()

    def for_tenant(self, tenant_id: str) -> ObjectStore:
        raise FailedPrecondition(f"store is already scoped to tenant {quoted(self.tenant_id)}")

    def _full(self, key: str) -> str:
        full = self._prefix + key
        if len(full.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(f"object key {quoted(key)} is too long: at most {MAX_KEY_BYTES} bytes with the tenant prefix")
        return full

    def _outer(self, info: ObjectInfo) -> ObjectInfo:
        return dataclasses.replace(info, key=info.key[len(self._prefix):])

    def _put(self, key: str, data: PutData, content_type: str, size: int | None,
             sha256: str | None) -> ObjectInfo:
        return self._outer(self._inner._put(self._full(key), data, content_type, size, sha256))

    def _open(self, key: str, offset: int, length: int | None,
              chunk_size: int) -> tuple[ObjectInfo, Iterator[bytes]]:
        info, chunks = self._inner._open(self._full(key), offset, length, chunk_size)
        return self._outer(info), chunks

    def _stat(self, key: str) -> ObjectInfo:
        return self._outer(self._inner._stat(self._full(key)))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        return (self._outer(info) for info in self._inner._list(self._prefix + prefix))

    def _delete(self, key: str) -> None:
        self._inner._delete(self._full(key))

    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        return self._outer(self._inner._copy(self._full(src_key), self._full(dst_key)))

    def _presign(self, method: Literal["GET", "PUT"], key: str, expires: timedelta) -> str | None:
        return self._inner._presign(method, self._full(key), expires)
