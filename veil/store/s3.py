"""S3 object store through the `minio` client (MinIO in production; any S3-compatible endpoint).

- The sha256 travels as user metadata (`x-amz-meta-sha256`), so stat returns it from a HEAD.
  Since it must be sent before the content, a put first stages the data (memory, then a temp file
  past VEIL_S3_SPOOL_MEMORY_BYTES) while hashing it; the staged copy is also what retries re-send.
- A put is one PUT, or a multipart upload that S3 publishes only on completion; minio aborts the
  upload when a part fails, so a failed put leaves no object. (If the server is unreachable even
  for the abort, the incomplete upload stays invisible until the bucket's lifecycle removes it.)
- Requests are retried with exponential backoff and jitter on connection errors, 5xx and
  throttling, bounded by VEIL_S3_RETRIES and VEIL_S3_RETRY_DEADLINE_SECONDS; then Unavailable.
  urllib3's own retries are off so these are the only ones.
- Errors are typed: bad credentials -> Unauthenticated/PermissionDenied naming the endpoint and
  the access key id (never the secret), missing bucket -> FailedPrecondition, missing object ->
  NotFound.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Literal, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.time import from_http_header

from veil.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                         Unauthenticated, Unavailable, VeilError)
from veil.store.base import (ContentDigest, ObjectInfo, ObjectStore, PutData, disk_error, iter_input,
                             range_end)
from veil.store.config import StoreConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

SHA256_METADATA = "sha256"  # sent as x-amz-meta-sha256
_SHA256_HEADER = "x-amz-meta-sha256"
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "MissingAuthenticationToken"}
_RETRYABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                    "Throttling", "ThrottlingException", "RequestLimitExceeded",
                    "XMinioServerNotInitialized"}


def _info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    modified = headers.get("last-modified")
    return ObjectInfo(
        key=key,
        size=int(headers.get("content-length", "0")),
        sha256=(headers.get(_SHA256_HEADER) or "").lower() or None,
        content_type=headers.get("content-type") or "application/octet-stream",
        last_modified=from_http_header(modified) if modified else None,
    )


class S3Store(ObjectStore):
    def __init__(self, config: StoreConfig) -> None:
        if config.s3_endpoint is None or config.s3_access_key is None or config.s3_secret_key is None:
            raise InvalidArgument("S3Store needs s3_endpoint, s3_access_key and s3_secret_key")
        self._config = config
        self._bucket = config.bucket
        self._url = f"{'https' if config.s3_secure else 'http'}://{config.s3_endpoint}"
        timeout = urllib3.Timeout(connect=config.s3_timeout_seconds, read=config.s3_timeout_seconds)
        http = urllib3.PoolManager(timeout=timeout, maxsize=16, retries=False, cert_reqs="CERT_REQUIRED",
                                   ca_certs=config.s3_ca_file or certifi.where())
        self._client = Minio(config.s3_endpoint, access_key=config.s3_access_key,
                             secret_key=config.s3_secret_key, secure=config.s3_secure,
                             region=config.s3_region, http_client=http)

    @property
    def bucket(self) -> str:
        return self._bucket

    def __repr__(self) -> str:
        return f"S3Store({self._url!r}, bucket={self._bucket!r}, access_key={self._config.s3_access_key!r})"

    # -- error handling --------------------------------------------------------------------------

    def _translate(self, exc: Exception, what: str, key: str | None) -> tuple[VeilError, bool] | None:
        """(typed error, retryable) for an exception of the minio/urllib3 stack, else None."""
        where = f"object store {self._url}"
        if isinstance(exc, S3Error):
            code, status = exc.code, exc.response.status
            if code in _AUTH_CODES:
                return Unauthenticated(
                    f"{where} rejected access key id {self._config.s3_access_key!r} ({code}) during "
                    f"{what}: check VEIL_S3_ACCESS_KEY and VEIL_S3_SECRET_KEY"), False
            if code == "AccessDenied":
                return PermissionDenied(
                    f"{where} denied access key id {self._config.s3_access_key!r} during {what}: wrong "
                    f"credentials, or no permission on bucket {self._bucket!r}"), False
            if code == "NoSuchBucket":
                return FailedPrecondition(f"bucket {self._bucket!r} does not exist at {where}"), False
            if code == "NoSuchKey":
                return NotFound(f"object {key or exc.object_name!r} not found in bucket {self._bucket!r}"), False
            if code in _RETRYABLE_CODES or status >= 500:
                return Unavailable(f"{where} failed {what}: {code}: {exc.message}"), True
            return VeilError(f"{where} failed {what}: {code}: {exc.message}"), False
        if isinstance(exc, ServerError):
            return Unavailable(f"{where} failed {what}: HTTP {exc.status_code}"), exc.status_code >= 500
        if isinstance(exc, InvalidResponseError):
            return Unavailable(f"{where} sent an unexpected response during {what}: {exc}"), True
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
            return Unavailable(f"{where} is unreachable during {what}: {exc}"), True
        return None

    def _call(self, what: str, request: Callable[[], T], key: str | None = None) -> T:
        """Run `request`, retrying transient failures with exponential backoff and jitter."""
        cfg = self._config
        start = time.monotonic()
        delay = cfg.s3_backoff_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except VeilError:
                raise
            except Exception as exc:
                translated = self._translate(exc, what, key)
                if translated is None:
                    raise
                error, retryable = translated
                elapsed = time.monotonic() - start
                pause = min(delay, cfg.s3_backoff_max_seconds) * random.uniform(0.5, 1.0)
                if not retryable:
                    raise error from exc
                if attempt > cfg.s3_retries or elapsed + pause > cfg.s3_retry_deadline_seconds:
                    raise type(error)(f"{error} (gave up after {attempt} attempts in {elapsed:.1f} s)") from exc
                log.warning("%s (attempt %d of %d), retrying in %.2f s", error, attempt, cfg.s3_retries + 1, pause)
                time.sleep(pause)
                delay *= 2

    # -- operations ------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        if self._call(f"check of bucket {self._bucket!r}", lambda: self._client.bucket_exists(self._bucket)):
            return
        if not self._config.s3_create_bucket:
            raise FailedPrecondition(
                f"bucket {self._bucket!r} does not exist at object store {self._url} "
                "(create it, or set VEIL_S3_CREATE_BUCKET=true)")
        try:
            self._call(f"creation of bucket {self._bucket!r}", lambda: self._client.make_bucket(self._bucket))
        except VeilError as exc:
            # Another replica created it first.
            if not isinstance(exc.__cause__, S3Error) or exc.__cause__.code != "BucketAlreadyOwnedByYou":
                raise

    def _put(self, key: str, data: PutData, content_type: str, size: int | None,
             sha256: str | None) -> ObjectInfo:
        with tempfile.SpooledTemporaryFile(max_size=self._config.s3_spool_memory_bytes) as staged:
            digest = ContentDigest()
            for chunk in iter_input(data):  # errors of the caller's source propagate unchanged
                digest.update(chunk)
                try:
                    staged.write(chunk)
                except OSError as exc:
                    raise disk_error(f"staging {key!r} for upload failed", exc) from None
            digest.check_declared(key, size, sha256)

            def upload() -> None:
                staged.seek(0)
                self._client.put_object(
                    self._bucket, key, staged, digest.size, content_type=content_type,
                    metadata={SHA256_METADATA: digest.hexdigest},
                    part_size=self._config.s3_part_size_bytes, num_parallel_uploads=1)

            self._call(f"put of {key!r}", upload)
        return ObjectInfo(key, digest.size, digest.hexdigest, content_type)

    def _stat(self, key: str) -> ObjectInfo:
        obj = self._call(f"stat of {key!r}", lambda: self._client.stat_object(self._bucket, key), key)
        return _info_from_headers(key, obj.metadata)

    def _open(self, key: str, offset: int, length: int | None,
              chunk_size: int) -> tuple[ObjectInfo, Iterator[bytes]]:
        if offset == 0 and length is None:
            response = self._call(f"get of {key!r}", lambda: self._client.get_object(self._bucket, key), key)
            return _info_from_headers(key, response.headers), self._stream(key, response, chunk_size)
        info = self._stat(key)
        end = range_end(key, offset, length, info.size)
        if end == offset:
            return info, iter(())
        response = self._call(f"get of {key!r}", lambda: self._client.get_object(
            self._bucket, key, offset=offset, length=end - offset), key)
        return info, self._stream(key, response, chunk_size)

    def _stream(self, key: str, response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from response.stream(chunk_size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"object store {self._url}: reading {key!r} failed: {exc}") from exc
        finally:
            response.close()
            response.release_conn()

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        objects = self._call(f"list of {prefix!r}", lambda: list(self._client.list_objects(
            self._bucket, prefix=prefix or None, recursive=True, include_user_meta=True)))
        for obj in objects:
            metadata = {k.lower(): v for k, v in (obj.metadata or {}).items()}
            if _SHA256_HEADER in metadata and "content-type" in metadata:  # MinIO lists user metadata
                yield ObjectInfo(obj.object_name, obj.size, metadata[_SHA256_HEADER].lower(),
                                 metadata["content-type"], obj.last_modified)
                continue
            try:
                yield self._stat(obj.object_name)
            except NotFound:  # deleted since the listing
                continue

    def _delete(self, key: str) -> None:
        self._call(f"delete of {key!r}", lambda: self._client.remove_object(self._bucket, key))

    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._call(f"copy of {src_key!r} to {dst_key!r}", lambda: self._client.copy_object(
            self._bucket, dst_key, CopySource(self._bucket, src_key)), src_key)
        return self._stat(dst_key)

    def _presign(self, method: Literal["GET", "PUT"], key: str, expires: timedelta) -> str | None:
        if method == "GET":
            return self._client.presigned_get_object(self._bucket, key, expires=expires)
        return self._client.presigned_put_object(self._bucket, key, expires=expires)
