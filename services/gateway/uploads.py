"""UploadImage: the client-streamed image (UploadHeader, then chunks), checked as it arrives, and
stored content-addressed in the tenant's namespace (uploads/<sha256>.<png|jpg>), so the same
bytes uploaded twice are one object."""

from __future__ import annotations

from collections.abc import AsyncIterator

from veil.errors import InvalidArgument
from services.gateway.state import StoredObject
from veil.store import ObjectStore
from veil.uploads import check_upload_header
from veil.v1 import common_pb2, gateway_pb2

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
UPLOADS_PREFIX = "uploads/"


def check_header(header: common_pb2.UploadHeader, max_bytes: int) -> common_pb2.UploadHeader:
    check_upload_header(header, max_bytes, "upload")
    if len(header.request_id) > 128 or len(header.subject_id) > 256:
        raise InvalidArgument("upload: request_id is at most 128 characters, subject_id 256")
    return header


async def receive_upload(parts: AsyncIterator[gateway_pb2.UploadImageRequest],
                         max_bytes: int) -> tuple[common_pb2.UploadHeader, bytes]:
    """The header and the content, refused as soon as the stream breaks its own declaration
    (more bytes than declared are never buffered)."""
    header: common_pb2.UploadHeader | None = None
    data = bytearray()
    async for part in parts:
        which = part.WhichOneof("part")
        if which == "header":
            if header is not None:
                raise InvalidArgument("upload: a second UploadHeader; send one, then the chunks")
            header = check_header(part.header, max_bytes)
        elif which == "chunk":
            if header is None:
                raise InvalidArgument("upload: send the UploadHeader before the chunks")
            data += part.chunk.data
            if len(data) > header.size:
                raise InvalidArgument(f"upload: received more than the declared {header.size} bytes")
        else:
            raise InvalidArgument("upload: a message with neither header nor chunk")
    if header is None:
        raise InvalidArgument("upload: no UploadHeader")
    if len(data) != header.size:
        raise InvalidArgument(f"upload: declared size is {header.size} bytes, received {len(data)}")
    return header, bytes(data)


def stored_image(store: ObjectStore, data: bytes, content_type: str, sha256: str,
                 shape: tuple[int, ...]) -> StoredObject:
    """Write the (already decoded and checked) image; returns its object."""
    key = f"{UPLOADS_PREFIX}{sha256}.{EXTENSIONS[content_type]}"
    info = store.put(key, data, content_type=content_type, size=len(data), sha256=sha256)
    return StoredObject(bucket=store.bucket, key=info.key, sha256=sha256, size=info.size,
                        content_type=content_type, width=shape[1], height=shape[0])
