"""Conversions between ObjectInfo and the veil.v1.ObjectRef message (the only place that does it).

ObjectRef.key is relative to the caller's tenant prefix: convert with the tenant's view of the
store (`store.for_tenant(t)`), whose keys are already relative.
"""

from __future__ import annotations

from veil.errors import InvalidArgument
from veil.store.base import DEFAULT_CONTENT_TYPE, ObjectInfo
from veil.store.keys import validate_content_type, validate_key, validate_sha256
from veil.v1 import common_pb2


def to_object_ref(info: ObjectInfo, bucket: str) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=bucket, key=info.key, sha256=info.sha256 or "",
                                size=info.size, content_type=info.content_type)


def from_object_ref(ref: common_pb2.ObjectRef, bucket: str) -> ObjectInfo:
    """Validate a caller's ref against the store's `bucket` ("" in the ref means that bucket).

    Returns the key with the sha256 to verify on read (None when the ref has none); size 0 and
    content type "" in the ref mean "not given".
    """
    if ref.bucket and ref.bucket != bucket:
        raise InvalidArgument(f"object ref names bucket {ref.bucket!r}; this service stores in {bucket!r}")
    if ref.size < 0:
        raise InvalidArgument(f"object ref {ref.key!r} has a negative size {ref.size}")
    return ObjectInfo(
        key=validate_key(ref.key),
        size=ref.size,
        sha256=validate_sha256(ref.sha256) if ref.sha256 else None,
        content_type=validate_content_type(ref.content_type) if ref.content_type else DEFAULT_CONTENT_TYPE,
    )
