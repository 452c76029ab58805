"""Local-directory object store: the embedded default.

Layout under the root directory: `<bucket>/<key>` holds one file per object, `.tmp/` stages writes
(same file system, so the final `os.replace` is atomic).

Each object file is a 512-byte header (b"VEILOBJ1" + JSON {size, sha256, content_type}, padded)
followed by the content. Keeping the metadata in the object's own file means one rename publishes
content and metadata together; a sidecar file would need two renames, and a concurrent writer or
a crash between them would pair one writer's bytes with another's sha256.

Limitation: a key cannot be both an object and a "directory" of other objects ("a" and "a/b");
putting the second raises FailedPrecondition. S3 allows both.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

from veil.errors import DataLoss, FailedPrecondition, NotFound, quoted
from veil.store.base import (ContentDigest, ObjectInfo, ObjectStore, PutData, disk_error, iter_input,
                             range_end)
from veil.store.keys import validate_bucket

HEADER_SIZE = 512
MAGIC = b"VEILOBJ1"
# Staged files older than this were left by a crashed writer; younger ones may be in use.
STALE_TEMP_SECONDS = 3600
_PUBLISH_ATTEMPTS = 3


def _header(size: int, sha256: str, content_type: str) -> bytes:
    meta = json.dumps({"size": size, "sha256": sha256, "content_type": content_type}).encode()
    header = MAGIC + meta
    if len(header) > HEADER_SIZE:  # content types are capped at 200 characters
        raise AssertionError("object header overflow")
    return header.ljust(HEADER_SIZE, b" ")


def _write(fd: int, key: str, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise disk_error(f"local object store cannot write {key!r}", exc) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ObjectStore):
    """Objects as files under `root/<bucket>/` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], bucket: str = "veil") -> None:
        self._root = Path(root).absolute()
        self._bucket = validate_bucket(bucket)
        self._dir = self._root / bucket
        self._staging = self._root / ".tmp"
        self.ensure_bucket()

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def root(self) -> Path:
        return self._root

    def ensure_bucket(self) -> None:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._staging.mkdir(parents=True, exist_ok=True)
            cutoff = time.time() - STALE_TEMP_SECONDS
            for entry in os.scandir(self._staging):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
        except OSError as exc:
            raise disk_error(f"local object store at {self._root} is not usable", exc) from None

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r}, bucket={self._bucket!r})"

    def _path(self, key: str) -> Path:
        return self._dir / key

    # -- writes ----------------------------------------------------------------------------------

    def _put(self, key: str, data: PutData, content_type: str, size: int | None,
             sha256: str | None) -> ObjectInfo:
        digest = ContentDigest()
        try:
            fd, tmp = tempfile.mkstemp(dir=self._staging, prefix="put-")
        except OSError as exc:
            raise disk_error(f"local object store cannot stage {key!r}", exc) from None
        staged = Path(tmp)
        try:
            _write(fd, key, bytes(HEADER_SIZE))
            for chunk in iter_input(data):  # errors of the caller's source propagate unchanged
                digest.update(chunk)
                _write(fd, key, chunk)
            digest.check_declared(key, size, sha256)
            os.lseek(fd, 0, os.SEEK_SET)
            _write(fd, key, _header(digest.size, digest.hexdigest, content_type))
            try:
                os.fsync(fd)
            except OSError as exc:
                raise disk_error(f"local object store cannot write {key!r}", exc) from None
            mtime = os.fstat(fd).st_mtime
            os.close(fd)
            fd = -1
            self._publish(staged, key)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            staged.unlink(missing_ok=True)
            raise
        return ObjectInfo(key, digest.size, digest.hexdigest, content_type,
                          datetime.fromtimestamp(mtime, UTC))

    def _publish(self, staged: Path, key: str) -> None:
        path = self._path(key)
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, path)
                break
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                raise FailedPrecondition(
                    f"object key {quoted(key)} conflicts with an existing object or prefix: the local "
                    "store cannot hold both 'a' and 'a/b'"
                ) from None
            except FileNotFoundError as exc:
                # A concurrent delete pruned the (empty) parent directory; create it again.
                if attempt == _PUBLISH_ATTEMPTS - 1:
                    raise disk_error(f"local object store cannot publish {key!r}", exc) from None
            except OSError as exc:
                raise disk_error(f"local object store cannot publish {key!r}", exc) from None
        _fsync_dir(path.parent)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        parent = path.parent
        while parent != self._dir:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): keep it
                break
            parent = parent.parent

    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        # Object files are never modified in place (only replaced), so a hard link is a copy.
        staged = self._staging / f"copy-{uuid.uuid4().hex}"
        try:
            os.link(self._path(src_key), staged)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(src_key) from None
        try:
            with open(staged, "rb") as f:
                info = self._read_header(f, dst_key)
            self._publish(staged, dst_key)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return info

    # -- reads -----------------------------------------------------------------------------------

    def _not_found(self, key: str) -> NotFound:
        return NotFound(f"object {key!r} not found in bucket {self._bucket!r}")

    def _open_file(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(key) from None
        except OSError as exc:
            raise disk_error(f"local object store cannot read {key!r}", exc) from None

    def _read_header(self, f: BinaryIO, key: str) -> ObjectInfo:
        raw = f.read(HEADER_SIZE)
        if len(raw) != HEADER_SIZE or not raw.startswith(MAGIC):
            raise DataLoss(f"object {quoted(key)}: stored file has no valid object header")
        try:
            meta = json.loads(raw[len(MAGIC):].rstrip(b" "))
            size, sha256, content_type = int(meta["size"]), str(meta["sha256"]), str(meta["content_type"])
        except (ValueError, KeyError, TypeError):
            raise DataLoss(f"object {quoted(key)}: stored object header is corrupt") from None
        st = os.fstat(f.fileno())
        if st.st_size != HEADER_SIZE + size:
            raise DataLoss(
                f"object {quoted(key)}: stored file holds {st.st_size - HEADER_SIZE} bytes, header says {size}"
            )
        return ObjectInfo(key, size, sha256, content_type, datetime.fromtimestamp(st.st_mtime, UTC))

    def _stat(self, key: str) -> ObjectInfo:
        with self._open_file(key) as f:
            return self._read_header(f, key)

    def _open(self, key: str, offset: int, length: int | None,
              chunk_size: int) -> tuple[ObjectInfo, Iterator[bytes]]:
        f = self._open_file(key)
        try:
            info = self._read_header(f, key)
            end = range_end(key, offset, length, info.size)
            f.seek(HEADER_SIZE + offset)
        except BaseException:
            f.close()
            raise
        return info, self._read_chunks(f, end - offset, chunk_size)

    @staticmethod
    def _read_chunks(f: BinaryIO, remaining: int, chunk_size: int) -> Iterator[bytes]:
        with f:
            while remaining > 0:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        directory, _, _ = prefix.rpartition("/")
        start = self._dir / directory if directory else self._dir
        keys = []
        for dirpath, _, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self._dir).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            try:
                yield self._stat(key)
            except NotFound:  # deleted since the walk
                continue

    def _presign(self, method: Literal["GET", "PUT"], key: str, expires: timedelta) -> str | None:
        return None
