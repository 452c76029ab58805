"""Model folders in the object store: upload one, pull one into a local cache, resolve a model URI.

A model URI is one of
- a local path (a model folder, see veil.diffusion.pipeline);
- ``store://<prefix>``: the prefix in the configured bucket (VEIL_S3_BUCKET);
- ``s3://<bucket>/<prefix>``: the prefix in another bucket of the configured store (with the
  local backend the bucket is a sub-directory of VEIL_STORE_ROOT).

An uploaded model is its files under ``<prefix>/`` plus ``<prefix>/model_manifest.json`` (each
file's size and sha256), written LAST: a prefix without a manifest is an incomplete upload and is
never loaded. A pull reads the manifest, downloads every file into a temporary folder next to the
cache entry, verifies each against the manifest's sha256 (DataLoss on a mismatch), and renames the
folder into place. A cached copy whose manifest matches the store's and whose files still hash
right is reused, so a restart does not download again.

    upload_model(Path("models/diffae-synth32"), store, "diffae-synth32/v1")
    folder = resolve_model("s3://veil-models/diffae-synth32/v1", StoreConfig.load(), "/tmp/veil-models")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.errors import DataLoss, InvalidArgument, NotFound
from veil.store import ObjectStore, StoreConfig, open_store, validate_key
from veil.store.base import disk_error
from veil.store.keys import validate_bucket, validate_sha256

log = logging.getLogger(__name__)

MANIFEST_FILE = "model_manifest.json"
MANIFEST_FORMAT = 1
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelLocation:
    """Where a model URI points: a local folder, or a prefix in a bucket of the object store."""

    path: Path | None = None
    bucket: str | None = None  # None with a prefix: the configured bucket
    prefix: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelLocation:
        if not uri:
            raise InvalidArgument("model URI is empty")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return cls(path=Path(uri))
        if scheme == "store":
            return cls(prefix=_model_prefix(uri, rest))
        if scheme == "s3":
            bucket, _, prefix = rest.partition("/")
            return cls(bucket=validate_bucket(bucket), prefix=_model_prefix(uri, prefix))
        raise InvalidArgument(f"model URI {uri!r}: unknown scheme {scheme!r}; use a local path, "
                              "store://<prefix> or s3://<bucket>/<prefix>")

    def store(self, config: StoreConfig) -> ObjectStore:
        """The object store holding this model (its bucket when the URI names one)."""
        if self.prefix is None:
            raise InvalidArgument(f"{self.path} is a local folder, not an object-store prefix")
        return open_store(dataclasses.replace(config, bucket=self.bucket) if self.bucket else config)


def _model_prefix(uri: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix:
        raise InvalidArgument(f"model URI {uri!r} names no prefix")
    try:
        return validate_key(prefix)
    except InvalidArgument as exc:
        raise InvalidArgument(f"model URI {uri!r}: {exc}") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the folder's files (hidden files and the manifest excluded)."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST_FILE and not any(p.startswith(".") for p in rel.split("/")):
            files.append(rel)
    return files


def upload_model(folder: str | Path, store: ObjectStore, prefix: str) -> dict[str, Any]:
    """Put every file of a model folder under `prefix`, then the manifest; returns the manifest."""
    folder = Path(folder)
    prefix = validate_key(prefix.strip("/"))
    files = _model_files(folder)
    if not (folder / "model_card.json").is_file():
        raise NotFound(f"{folder}: not a model folder (no model_card.json)")
    entries: dict[str, dict[str, Any]] = {}
    for rel in files:
        with open(folder / rel, "rb") as f:
            info = store.put(f"{prefix}/{rel}", f)
        entries[rel] = {"sha256": info.sha256, "size": info.size}
    manifest = {"format": MANIFEST_FORMAT, "files": entries}
    store.put(f"{prefix}/{MANIFEST_FILE}", _manifest_bytes(manifest), content_type="application/json")
    log.info("uploaded model %s (%d files) to %s/%s", folder, len(entries), store.bucket, prefix)
    return manifest


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _parse_manifest(raw: bytes, where: str) -> dict[str, dict[str, Any]]:
    """file -> {sha256, size}; DataLoss when the manifest is not what upload_model writes."""
    try:
        manifest = json.loads(raw)
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
        files = manifest["files"]
        for rel, entry in files.items():
            validate_key(rel)
            validate_sha256(entry["sha256"])
            if not isinstance(entry["size"], int) or entry["size"] < 0:
                raise ValueError(f"{rel}: bad size {entry['size']!r}")
    except (ValueError, KeyError, TypeError, AttributeError, InvalidArgument) as exc:
        raise DataLoss(f"{where}: {MANIFEST_FILE} is corrupt ({exc})") from None
    if "model_card.json" not in files:
        raise DataLoss(f"{where}: {MANIFEST_FILE} lists no model_card.json")
    return files


def _cached_copy_matches(folder: Path, manifest_raw: bytes, files: dict[str, dict[str, Any]]) -> bool:
    try:
        if (folder / MANIFEST_FILE).read_bytes() != manifest_raw:
            return False
        return all((folder / rel).stat().st_size == entry["size"] and _file_sha256(folder / rel) == entry["sha256"]
                   for rel, entry in files.items())
    except OSError:
        return False


def pull_model(store: ObjectStore, prefix: str, cache_dir: str | Path) -> Path:
    """The model under `prefix`, downloaded (or reused) at `cache_dir/<bucket>/<prefix>`."""
    prefix = validate_key(prefix.strip("/"))
    where = f"model at {store.bucket}/{prefix}"
    try:
        manifest_raw = store.get(f"{prefix}/{MANIFEST_FILE}")
    except NotFound:
        raise NotFound(f"no {where}: {prefix}/{MANIFEST_FILE} is missing (upload models with "
                       "`veil model upload`; the manifest is written last)") from None
    files = _parse_manifest(manifest_raw, where)
    target = Path(cache_dir) / store.bucket / prefix
    if _cached_copy_matches(target, manifest_raw, files):
        log.info("using the cached copy of the %s in %s", where, target)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise disk_error(f"model cache {cache_dir}", exc) from None
    try:
        for rel, entry in files.items():
            _download(store, f"{prefix}/{rel}", entry, staging / rel)
        (staging / MANIFEST_FILE).write_bytes(manifest_raw)
        _publish(staging, target, lambda: _cached_copy_matches(target, manifest_raw, files))
    except OSError as exc:
        raise disk_error(f"model cache {target}", exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled the %s (%d files) into %s", where, len(files), target)
    return target


def _download(store: ObjectStore, key: str, entry: dict[str, Any], path: Path) -> None:
    """One file, verified against the manifest's sha256 (DataLoss from the store on a mismatch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "wb") as f:
        for chunk in store.iter_chunks(key, expected_sha256=entry["sha256"]):
            f.write(chunk)
            size += len(chunk)
    if size != entry["size"]:
        raise DataLoss(f"object {key!r}: {size} bytes, the model manifest says {entry['size']}")


def _publish(staging: Path, target: Path, already_there: Callable[[], bool]) -> None:
    """Rename the staged folder into place, moving a stale copy aside first; when a concurrent
    puller published the same model first, theirs is kept."""
    stale = None
    if target.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
        try:
            os.replace(target, stale / "model")
        except FileNotFoundError:  # a concurrent puller moved it
            pass
    try:
        os.rename(staging, target)
    except OSError:
        if not already_there():
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


def resolve_model(uri: str, store_config: StoreConfig, cache_dir: str | Path) -> Path:
    """The local folder of the model named by `uri` (pulled from the store when it names a prefix)."""
    location = ModelLocation.parse(uri)
    if location.prefix is None:
        return Path(uri)
    return pull_model(location.store(store_config), location.prefix, cache_dir)
