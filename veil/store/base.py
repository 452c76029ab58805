"""The ObjectStore interface shared by the local-directory and S3 backends.

The store is synchronous (services call it through `asyncio.to_thread`). Public methods validate
their arguments and verify content; backends implement the underscored primitives.

Contract, for every backend:
- `put` publishes atomically: readers see the previous object or the complete new one, never a
  mix or a prefix; a failed put leaves nothing behind. The content's sha256 is stored with the
  object, so `stat` returns it without reading the content.
- Full reads (`get`/`iter_chunks` without a range) are verified against `expected_sha256` when
  given, else against the stored sha256: a mismatch or a short object raises DataLoss. Range
  reads cannot be verified.
- `delete` is idempotent; `list` yields objects sorted by key.
- Keys are validated by veil.store.keys; `for_tenant` returns a view confined to one tenant.
"""

from __future__ import annotations

import errno
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Literal

from veil.errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted, Unavailable, VeilError, quoted
from veil.store.keys import validate_content_type, validate_key, validate_prefix, validate_sha256

DEFAULT_CONTENT_TYPE = "application/octet-stream"
CHUNK_SIZE = 1 << 20
MAX_PRESIGN_EXPIRY = timedelta(days=7)

# bytes-like, a binary stream with .read(n), or an iterable of byte chunks.
PutData = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # Hex sha256 of the content; None only for objects written without one (e.g. through a
    # presigned PUT URL).
    sha256: str | None
    content_type: str
    # None where the backend did not report it (the result of an S3 put).
    last_modified: datetime | None = None


class ContentDigest:
    """Running size and sha256 of the bytes seen so far."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def check_declared(self, key: str, size: int | None, sha256: str | None) -> None:
        """Raise when the content differs from what the writer declared."""
        if size is not None and size != self.size:
            raise InvalidArgument(f"object {quoted(key)}: declared size is {size} bytes, received {self.size}")
        if sha256 is not None and sha256 != self.hexdigest:
            raise DataLoss(
                f"object {quoted(key)}: received content has sha256 {self.hexdigest}, declared {sha256}"
            )


def iter_input(data: PutData, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of `data` in chunks of at most `chunk_size`."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start:start + chunk_size])
    elif callable(getattr(data, "read", None)):
        while chunk := data.read(chunk_size):  # type: ignore[union-attr]
            yield chunk
    elif isinstance(data, Iterable) and not isinstance(data, str):
        for chunk in data:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidArgument(f"put data chunks must be bytes, got {type(chunk).__name__}")
            yield bytes(chunk)
    else:
        raise InvalidArgument(f"put data must be bytes, a binary stream or byte chunks, got {type(data).__name__}")


def disk_error(what: str, exc: OSError) -> VeilError:
    """A typed error for a failed local-disk step (ResourceExhausted when the disk is full)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(f"{what}: disk full ({exc.strerror})")
    return Unavailable(f"{what}: {exc.strerror or exc}")


def range_end(key: str, offset: int, length: int | None, size: int) -> int:
    """End (exclusive) of the byte range [offset, offset+length) of an object of `size` bytes."""
    if offset > size:
        raise InvalidArgument(f"object {quoted(key)}: offset {offset} is past its end ({size} bytes)")
    return size if length is None else min(size, offset + length)


def _release(chunks: Iterator[bytes]) -> None:
    """Close a backend's chunk generator early (its file or HTTP response)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _verified(key: str, info: ObjectInfo, chunks: Iterator[bytes], want: str | None) -> Iterator[bytes]:
    digest = ContentDigest()
    try:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
    finally:
        _release(chunks)
    if digest.size != info.size:
        raise DataLoss(f"object {quoted(key)} is truncated: read {digest.size} of {info.size} bytes")
    if want is not None and digest.hexdigest != want:
        raise DataLoss(f"object {quoted(key)}: content has sha256 {digest.hexdigest}, expected {want}")


class ObjectStore(ABC):
    """A bucket of objects addressed by validated keys (see the module docstring)."""

    @property
    @abstractmethod
    def bucket(self) -> str:
        """The bucket this store reads and writes (ObjectRef.bucket)."""

    # -- public API ------------------------------------------------------------------------------

    def put(self, key: str, data: PutData, *, content_type: str = DEFAULT_CONTENT_TYPE,
            size: int | None = None, sha256: str | None = None) -> ObjectInfo:
        """Store `data` under `key`, replacing any object there, atomically.

        `size` and `sha256`, when given, are what the writer declares: a mismatch raises
        InvalidArgument (size) or DataLoss (sha256) and stores nothing.
        """
        validate_key(key)
        validate_content_type(content_type)
        if size is not None and (not isinstance(size, int) or size < 0):
            raise InvalidArgument(f"declared size {quoted(size)} must be a non-negative integer")
        if sha256 is not None:
            validate_sha256(sha256)
        return self._put(key, data, content_type, size, sha256)

    def iter_chunks(self, key: str, *, offset: int = 0, length: int | None = None,
                    expected_sha256: str | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The object's bytes (or the range [offset, offset+length)) in chunks.

        Opens eagerly (NotFound etc. raise here); a full read raises DataLoss from the iterator
        after the last chunk when the content does not match: treat the data as bad then.
        """
        validate_key(key)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"offset {quoted(offset)} must be a non-negative integer")
        if length is not None and (not isinstance(length, int) or length < 0):
            raise InvalidArgument(f"length {quoted(length)} must be a non-negative integer")
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk_size {quoted(chunk_size)} must be positive")
        if expected_sha256 is not None:
            validate_sha256(expected_sha256)
        info, chunks = self._open(key, offset, length, chunk_size)
        if offset != 0 or length is not None:
            return chunks
        if expected_sha256 is not None and info.sha256 is not None and info.sha256 != expected_sha256:
            _release(chunks)
            raise DataLoss(f"object {quoted(key)} has sha256 {info.sha256}, expected {expected_sha256}")
        return _verified(key, info, chunks, expected_sha256 or info.sha256)

    def get(self, key: str, *, offset: int = 0, length: int | None = None,
            expected_sha256: str | None = None) -> bytes:
        """The object's bytes, or a range of them; full reads are verified (see iter_chunks)."""
        return b"".join(self.iter_chunks(key, offset=offset, length=length, expected_sha256=expected_sha256))

    def stat(self, key: str) -> ObjectInfo:
        """Size, sha256 and content type without reading the content; NotFound if absent."""
        return self._stat(validate_key(key))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""
        return self._list(validate_prefix(prefix))

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""
        self._delete(validate_key(key))

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Copy an object inside the bucket (server-side / hard link), atomically."""
        return self._copy(validate_key(src_key), validate_key(dst_key))

    def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        """A URL that downloads the object without credentials, or None where the backend has no
        URLs (the local-directory store)."""
        return self._presign("GET", validate_key(key), self._check_expiry(expires))

    def presigned_put_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        """A URL that uploads to `key` without credentials, or None (local-directory store).
        Objects written this way carry no stored sha256 (ObjectInfo.sha256 is None)."""
        return self._presign("PUT", validate_key(key), self._check_expiry(expires))

    def for_tenant(self, tenant_id: str) -> ObjectStore:
        """A view whose keys live under `tenants/<tenant_id>/` and cannot leave it."""
        from veil.store.tenant import TenantStore

        return TenantStore(self, tenant_id)

    @abstractmethod
    def ensure_bucket(self) -> None:
        """Check that the bucket is usable (creating it where configured); raise otherwise."""

    @staticmethod
    def _check_expiry(expires: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= expires <= MAX_PRESIGN_EXPIRY:
            raise InvalidArgument(f"presigned URL expiry {expires} must be between 1 s and 7 days")
        return expires

    # -- backend primitives (arguments already validated) ------------------------------------------

    @abstractmethod
    def _put(self, key: str, data: PutData, content_type: str, size: int | None,
             sha256: str | None) -> ObjectInfo: ...

    @abstractmethod
    def _open(self, key: str, offset: int, length: int | None,
              chunk_size: int) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's info and an iterator over the requested range."""

    @abstractmethod
    def _stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo: ...

    @abstractmethod
    def _presign(self, method: Literal["GET", "PUT"], key: str, expires: timedelta) -> str | None: ...
