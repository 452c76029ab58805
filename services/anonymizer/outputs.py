"""A request's results in the tenant's store: key layout, all-or-nothing writes, clean-up.

Layout under the request's output prefix (see protos/veil/v1/anonymizer.proto):
  <prefix>/<image>-<candidate>.png|.jpg|.webp (the input's format), <prefix>/<image>-<candidate>.receipt.json, <prefix>/inputs/<image>.png|.jpg
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from veil.privacy import MAX_CANDIDATES
from veil.errors import Aborted, InvalidArgument, VeilError, quoted
from veil.store import ObjectInfo, ObjectStore, validate_key
from veil.store.keys import MAX_KEY_BYTES

log = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class PendingObject:
    key: str
    data: bytes
    content_type: str


def output_prefix(prefix: str, tenant_prefix: str, images: int) -> str:
    """The validated prefix (one trailing "/" allowed); its longest key, under the tenant's
    prefix in the bucket, must fit the key limit."""
    if not prefix:
        raise InvalidArgument("output_prefix is required: where to write the results")
    prefix = validate_key(prefix.removesuffix("/"))
    longest = receipt_key(prefix, images - 1, MAX_CANDIDATES - 1)
    if len((tenant_prefix + longest).encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(f"output_prefix {quoted(prefix)} is too long: keys under it must fit {MAX_KEY_BYTES} bytes")
    return prefix


def image_key(prefix: str, image: int, candidate: int, content_type: str) -> str:
    return f"{prefix}/{image}-{candidate}.{EXTENSIONS[content_type]}"


def receipt_key(prefix: str, image: int, candidate: int) -> str:
    return f"{prefix}/{image}-{candidate}.receipt.json"


def input_key(prefix: str, image: int, content_type: str) -> str:
    return f"{prefix}/inputs/{image}.{EXTENSIONS[content_type]}"


def receipt_json(receipt: dict[str, object]) -> bytes:
    return (json.dumps(receipt, indent=2, sort_keys=True) + "\n").encode()


def write_all(store: ObjectStore, objects: Sequence[PendingObject], abandoned: threading.Event) -> list[ObjectInfo]:
    """Put every object, or none: a failure, or `abandoned` set before the last put, deletes
    what was written and raises."""
    written: list[ObjectInfo] = []
    try:
        for obj in objects:
            if abandoned.is_set():
                raise Aborted("the request is gone; its results are not kept")
            written.append(store.put(obj.key, obj.data, content_type=obj.content_type))
    except BaseException:
        delete_all(store, [info.key for info in written])
        raise
    return written


def delete_all(store: ObjectStore, keys: Sequence[str]) -> None:
    """Best-effort removal of a failed request's objects (a failure is logged, the rest go on)."""
    for key in keys:
        try:
            store.delete(key)
        except VeilError as exc:
            log.error("could not delete %r of a failed request: %s", key, exc)
