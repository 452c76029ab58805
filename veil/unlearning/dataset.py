"""Images of a manifest, read from the object store and verified, as classifier tensors."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from veil.errors import InvalidArgument, quoted
from veil.store import ObjectStore
from veil.unlearning.classifier import images_to_tensor
from veil.unlearning.manifest import Manifest, ManifestEntry, PinnedObject


def decode_image(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:  # its message names the BytesIO object and its address
        raise InvalidArgument(f"{where} is not a readable image (format not recognised)") from None
    except OSError as exc:
        raise InvalidArgument(f"{where} is not a readable image ({exc})") from None


def read_images(store: ObjectStore, refs: Sequence[PinnedObject], image_size: int | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3); every object verified against its sha256 (DataLoss on mismatch) and
    of one square shape (`image_size` when given): a mismatch is InvalidArgument naming the object."""
    images = []
    for ref in refs:
        if ref.bucket != store.bucket:
            raise InvalidArgument(f"object {quoted(ref.key)} is in bucket {quoted(ref.bucket)}; the store serves "
                                  f"{quoted(store.bucket)}")
        image = decode_image(store.get(ref.key, expected_sha256=ref.sha256), f"object {ref.key!r}")
        expected = (image_size, image_size, 3) if image_size else images[0].shape if images else None
        if expected is not None and image.shape != expected:
            raise InvalidArgument(f"object {quoted(ref.key)} is {image.shape[1]}x{image.shape[0]} pixels; "
                                  f"expected {expected[1]}x{expected[0]}")
        if image.shape[0] != image.shape[1]:
            raise InvalidArgument(f"object {quoted(ref.key)} is {image.shape[1]}x{image.shape[0]}: images "
                                  "must be square")
        images.append(image)
    if not images:
        raise InvalidArgument("no images to read")
    return np.stack(images)


def label_tensor(entries: Sequence[ManifestEntry], columns: Sequence[int]) -> torch.Tensor:
    """Float 0/1 labels of `columns`; a missing (null) label is InvalidArgument."""
    rows = [[entry.labels[c] for c in columns] for entry in entries]
    if any(v is None for row in rows for v in row):
        raise InvalidArgument("a requested label is not recorded in the manifest")
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(columns))


@dataclass(frozen=True)
class ManifestTensors:
    train_images: torch.Tensor
    train_targets: torch.Tensor
    test_images: torch.Tensor
    test_targets: torch.Tensor


def load_manifest(store: ObjectStore, manifest: Manifest, image_size: int | None = None) -> ManifestTensors:
    """Train and test images with their task labels."""
    columns = manifest.columns(manifest.task_attributes)
    train = read_images(store, [e.object for e in manifest.train], image_size)
    test = read_images(store, [e.object for e in manifest.test], image_size or train.shape[1])
    return ManifestTensors(images_to_tensor(train), label_tensor(manifest.train, columns),
                           images_to_tensor(test), label_tensor(manifest.test, columns))


def encode_png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image, "RGB").save(out, format="PNG")
    return out.getvalue()


def import_celeba(store: ObjectStore, root: str | Path, prefix: str,
                  protected: Sequence[str], size: int | None = None) -> tuple[Manifest, str]:
    """Upload a CelebA-format data set (PNG, resized to `size` when given) under `prefix` and
    write its manifest next to the images; returns the manifest and its key.

    The train split (partition 0) is the training set and the test split (2) the test set; the
    validation split is not used.
    """
    from veil.data.celeba import load_celeba

    data = load_celeba(root, size=size)
    for name in protected:
        data.attribute_index(name)  # InvalidArgument naming the attributes there are
    splits: dict[int, list[ManifestEntry]] = {0: [], 2: []}
    for row, filename in enumerate(data.filenames):
        split = int(data.partition[row])
        if split not in splits:
            continue
        stem = filename.rsplit(".", 1)[0]
        info = store.put(f"{prefix}/{stem}.png", encode_png(data.images[row]), content_type="image/png")
        labels = tuple(int(v > 0) for v in data.attributes[row])
        splits[split].append(ManifestEntry(PinnedObject(store.bucket, info.key, info.sha256 or ""), labels))
    manifest = Manifest(tuple(data.attribute_names), tuple(protected), tuple(splits[0]), tuple(splits[2]))
    key = f"{prefix}/manifest.json"
    store.put(key, manifest.to_bytes(), content_type="application/json")
    return manifest, key
