"""A request's input images: read from a tenant's store by ref, or received as a client-streamed
upload; then decoded as photos by veil.faces.photo (blocking functions run through asyncio.to_thread)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from veil.errors import DataLoss, InvalidArgument, VeilError, quoted
from veil.faces.photo import Photo, decode_photo
from veil.store import DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectStore, from_object_ref
from veil.store.base import ContentDigest
from veil.uploads import check_upload_header
from veil.v1 import anonymizer_pb2, common_pb2


@dataclass(frozen=True)
class InputImage:
    data: bytes
    content_type: str | None  # None: told by the bytes
    stored: ObjectInfo | None  # where it is stored; None for an upload (written with the results)


def read_inputs(store: ObjectStore, refs: Sequence[common_pb2.ObjectRef], max_bytes: int) -> list[InputImage]:
    """The referenced objects, verified against the refs' sha256 and size (DataLoss on a mismatch)."""
    images = []
    for index, ref in enumerate(refs):
        wanted = from_object_ref(ref, store.bucket)
        info = store.stat(wanted.key)
        if info.size > max_bytes:
            raise InvalidArgument(f"image {index} ({quoted(wanted.key)}): {info.size} bytes, more than {max_bytes}")
        if ref.size and ref.size != info.size:
            raise DataLoss(f"image {index} ({quoted(wanted.key)}): stored object has {info.size} bytes, the ref says {ref.size}")
        data = store.get(wanted.key, expected_sha256=wanted.sha256)
        content_type = ref.content_type or info.content_type
        images.append(InputImage(data, None if content_type == DEFAULT_CONTENT_TYPE else content_type,
                                 ObjectInfo(info.key, len(data), info.sha256, info.content_type)))
    return images


def decode_inputs(images: Sequence[InputImage], max_side: int) -> list[Photo]:
    """Each image as a photo (any size up to `max_side`; InvalidArgument naming the image that is wrong)."""
    return [decode_photo(image.data, max_side, image.content_type, what=f"image {index}")
            for index, image in enumerate(images)]


class _Upload:
    """One image being received: its header and the chunks so far."""

    def __init__(self, index: int, header: common_pb2.UploadHeader, max_bytes: int) -> None:
        self.name = f"uploaded image {index}"
        check_upload_header(header, max_bytes, self.name)
        self.header = header
        self.digest = ContentDigest()
        self.chunks: list[bytes] = []

    def add(self, data: bytes) -> None:
        self.digest.update(data)
        if self.digest.size > self.header.size:
            raise InvalidArgument(f"{self.name}: received more than the declared {self.header.size} bytes")
        self.chunks.append(data)

    def finish(self) -> InputImage:
        self.digest.check_declared(self.name, self.header.size, self.header.sha256 or None)
        return InputImage(b"".join(self.chunks), self.header.content_type, None)


async def receive_upload(parts: AsyncIterator[anonymizer_pb2.AnonymizeUploadRequest], max_images: int,
                         max_bytes: int) -> tuple[anonymizer_pb2.AnonymizeRequest, list[InputImage]]:
    """The request and the images of an AnonymizeUpload stream, checked for order, count and size
    (on an error the rest of the stream is drained first, see drain_upload)."""
    try:
        return await _parse_upload(parts, max_images, max_bytes)
    except VeilError:
        await drain_upload(parts, max_images * max_bytes)
        raise


async def drain_upload(parts: AsyncIterator[anonymizer_pb2.AnonymizeUploadRequest], limit: int) -> None:
    """Read and drop what the client still sends (up to `limit` bytes) before refusing an upload:
    grpc's asyncio client reports INTERNAL ("Internal error from Core") instead of the server's
    status when one of its writes fails after the call has ended (grpc/grpc#36066), so the caller
    would not learn what was wrong."""
    received = 0
    async for part in parts:
        received += part.ByteSize()
        if received > limit:
            return


async def _parse_upload(parts: AsyncIterator[anonymizer_pb2.AnonymizeUploadRequest], max_images: int,
                        max_bytes: int) -> tuple[anonymizer_pb2.AnonymizeRequest, list[InputImage]]:
    request: anonymizer_pb2.AnonymizeRequest | None = None
    images: list[InputImage] = []
    current: _Upload | None = None
    async for part in parts:
        kind = part.WhichOneof("part")
        if request is None:
            if kind != "request":
                raise InvalidArgument(f"the first message of AnonymizeUpload must be `request`, got {kind or 'an empty one'}")
            request = part.request
            if request.images:
                raise InvalidArgument("an AnonymizeUpload request names no image refs: upload the images after it")
        elif kind == "image":
            if current is not None:
                images.append(current.finish())
            if len(images) >= max_images:
                raise InvalidArgument(f"more than {max_images} images in one request")
            current = _Upload(len(images), part.image, max_bytes)
        elif kind == "chunk":
            if current is None:
                raise InvalidArgument("a chunk arrived before any UploadHeader")
            current.add(part.chunk.data)
        else:
            raise InvalidArgument(f"unexpected AnonymizeUpload message: {kind or 'an empty one'}")
    if request is None:
        raise InvalidArgument("the AnonymizeUpload stream is empty")
    if current is None:
        raise InvalidArgument("no images were uploaded")
    images.append(current.finish())
    return request, images
