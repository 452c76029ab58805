"""The demo's published model: synthetic faces uploaded through the gateway (as a tenant's data
lands there), a dataset manifest over those very objects, and a classifier trained on it by the
unlearner. The session's original is one of the training faces, so its release makes the model
depend on an original that must be unlearned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from veil.client import GatewayClient
from veil.data import load_celeba
from veil.data.celeba import SPLITS, image_dir
from veil.errors import InvalidArgument
from veil.store import ObjectStore
from veil.unlearning.manifest import Manifest, ManifestEntry, PinnedObject
from veil.v1 import common_pb2

TRAIN, TEST = SPLITS["train"], SPLITS["test"]


@dataclass(frozen=True)
class DemoDataset:
    manifest: Manifest
    manifest_ref: common_pb2.ObjectRef
    subject_png: bytes  # the session's original (a training face showing the protected attribute)
    subject_pixels: np.ndarray


def build(client: GatewayClient, store: ObjectStore, faces: Path, protect: list[str],
          manifest_key: str) -> DemoDataset:
    """Upload every face of `faces` through the gateway, write the manifest (labels 0/1; the
    protected attributes are never trained on) into the tenant's store `store` at
    `manifest_key`, and pick the subject: the first training face with the first protected
    attribute set."""
    data = load_celeba(faces)
    folder = image_dir(faces)
    splits: dict[int, list[ManifestEntry]] = {TRAIN: [], TEST: []}
    subject: int | None = None
    flag = data.attribute_index(protect[0])
    for row, filename in enumerate(data.filenames):
        split = int(data.partition[row])
        if split not in splits:
            continue
        png = (folder / filename).read_bytes()
        ref = client.upload_image(png).object
        labels = tuple(int(v > 0) for v in data.attributes[row])
        splits[split].append(ManifestEntry(PinnedObject(ref.bucket, ref.key, ref.sha256), labels))
        if subject is None and split == TRAIN and data.attributes[row, flag] > 0:
            subject = row
    if subject is None:
        raise InvalidArgument(f"no training face has {protect[0]}; generate more identities")
    manifest = Manifest(tuple(data.attribute_names), tuple(protect), tuple(splits[TRAIN]),
                        tuple(splits[TEST]))
    body = manifest.to_bytes()
    info = store.put(manifest_key, body, content_type="application/json")
    ref = common_pb2.ObjectRef(bucket=store.bucket, key=info.key, sha256=info.sha256 or "",
                               size=info.size, content_type="application/json")
    subject_png = (folder / data.filenames[subject]).read_bytes()
    return DemoDataset(manifest, ref, subject_png, data.images[subject])
