"""Conversions between stored objects and the veil.v1.ObjectRef message (the only place that
does it).

ObjectRef.key is relative to the caller's tenant prefix: convert with the tenant's view of the
store (`store.for_tenant(t)`), whose keys are already relative.
"""

from __future__ import annotations

from typing import Protocol

from veil.errors import InvalidArgument, quoted
from veil.store.base import DEFAULT_CONTENT_TYPE, ObjectInfo
from veil.store.keys import validate_content_type, validate_key, validate_sha256
from veil.v1 import common_pb2


class StoredRef(Protocol):
    """A stored object as a service's records name it (e.g. services.gateway.state.StoredObject)."""

    @property
    def bucket(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def content_type(self) -> str: ...


def object_ref(obj: StoredRef) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=obj.bucket, key=obj.key, sha256=obj.sha256, size=obj.size,
                                content_type=obj.content_type)


def to_object_ref(info: ObjectInfo, bucket: str) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=bucket, key=info.key, sha256=info.sha256 or "",
                                size=info.size, content_type=info.content_type)


def from_object_ref(ref: common_pb2.ObjectRef, bucket: str) -> ObjectInfo:
    """Validate a caller's ref against the store's `bucket` ("" in the ref means that bucket).

    Returns the key with the sha256 to verify on read (None when the ref has none); size 0 and
    content type "" in the ref mean "not given".
    """
    if ref.bucket and ref.bucket != bucket:
        raise InvalidArgument(f"object ref names bucket {quoted(ref.bucket)}; this service stores in {quoted(bucket)}")
    if ref.size < 0:
        raise InvalidArgument(f"object ref {quoted(ref.key)} has a negative size {ref.size}")
    return ObjectInfo(
        key=validate_key(ref.key),
        size=ref.size,
        sha256=validate_sha256(ref.sha256) if ref.sha256 else None,
        content_type=validate_content_type(ref.content_type) if ref.content_type else DEFAULT_CONTENT_TYPE,
    )
