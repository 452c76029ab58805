"""Client-streamed image uploads (an UploadHeader, then chunks): the header checks every service
applies before it buffers a byte."""

from __future__ import annotations

from veil.errors import InvalidArgument, quoted
from veil.images import CONTENT_TYPES
from veil.store.keys import validate_sha256
from veil.v1 import common_pb2


def check_upload_header(header: common_pb2.UploadHeader, max_bytes: int, what: str) -> None:
    """InvalidArgument naming `what` unless the content type is PNG or JPEG, the declared size
    is in 1..max_bytes and the sha256, when given, is well-formed."""
    if header.content_type not in CONTENT_TYPES.values():
        raise InvalidArgument(f"{what}: content type {quoted(header.content_type)} is not supported; "
                              f"use {' or '.join(CONTENT_TYPES.values())}")
    if not 0 < header.size <= max_bytes:
        raise InvalidArgument(f"{what}: declared size {header.size} must be in 1..{max_bytes} bytes")
    if header.sha256:
        validate_sha256(header.sha256)
