"""ModelRegistry on both store backends (local directory, S3 via nanio)."""

from __future__ import annotations

import threading

import pytest
import torch

from veil.errors import DataLoss, InvalidArgument, NotFound
from veil.store import LocalStore, ObjectStore
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.manifest import Manifest, ManifestEntry, PinnedObject
from veil.unlearning.registry import ModelRegistry
from veil.unlearning.params import TrainConfig
from veil.unlearning.training import initialise

SPEC = ClassifierSpec(image_size=8, num_outputs=2, channels=(2,), embedding_dim=4)


def manifest(bucket: str) -> Manifest:
    def entry(i: int) -> ManifestEntry:
        return ManifestEntry(PinnedObject(bucket, f"images/{i}.png", f"{i:064x}"), (i % 2, 1, 0))

    return Manifest(("Smiling", "Young", "Male"), ("Male",), (entry(1), entry(2)), (entry(3),))


def save(registry: ModelRegistry, parent: str | None = None, seed: int = 0, method: str = "train"):
    model = initialise(lambda: build_classifier(SPEC), seed)
    return registry.save_version(model="faces", parent=parent, state_dict=model.state_dict(),
                         manifest=manifest(registry.store.bucket), spec=SPEC, training=TrainConfig(),
                         method=method, metrics={"test_accuracy": 0.5}, session_ids=("s1",), pairs=1)


def test_versions_lineage_and_round_trip(store: ObjectStore):
    registry = ModelRegistry(store)
    root = save(registry)
    child = save(registry, parent=root.version, seed=1, method="second")
    grandchild = save(registry, parent=child.version, seed=2, method="first")
    assert [root.version, child.version, grandchild.version] == ["v1", "v2", "v3"]
    assert registry.lineage("faces", "v3") == ["v1", "v2", "v3"]
    assert [c.version for c in registry.list()] == ["v3", "v2", "v1"]
    assert registry.card("faces").version == "v3"
    loaded = registry.load_version("faces", "v2")
    assert loaded.card == child
    expected = initialise(lambda: build_classifier(SPEC), 1).state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, expected[name])
    assert registry.manifest(loaded.card) == manifest(store.bucket)
    assert loaded.card.manifest_sha256 == manifest(store.bucket).sha256
    assert registry.dependents({f"{1:064x}"}) == [grandchild]
    assert registry.dependents({f"{9:064x}"}) == []


def test_unknown_versions_and_models_are_named(store: ObjectStore):
    registry = ModelRegistry(store)
    save(registry)
    with pytest.raises(NotFound, match=r"model 'faces' has no version 'v7' \(versions: v1\)"):
        registry.load_version("faces", "v7")
    with pytest.raises(NotFound, match="model 'other' has no versions"):
        registry.card("other")
    with pytest.raises(InvalidArgument, match="versions are v1, v2"):
        registry.card("faces", "latest")
    with pytest.raises(InvalidArgument, match="model name"):
        registry.card("../faces")
    with pytest.raises(NotFound, match="no version 'v4'"):
        save(registry, parent="v4")


class FailingCardStore(LocalStore):
    """A real local store whose card writes fail, as a full disk would fail them."""

    def _put(self, key, data, content_type, size, sha256):
        if key.endswith("/card.json"):
            raise OSError("disk full")
        return super()._put(key, data, content_type, size, sha256)


def test_a_failed_save_leaves_no_version(tmp_path):
    registry = ModelRegistry(LocalStore(tmp_path))
    save(registry)
    failing = ModelRegistry(FailingCardStore(tmp_path))
    with pytest.raises(OSError):
        save(failing, parent="v1")
    assert registry.versions("faces") == ["v1"]
    assert not [i.key for i in registry.store.list("models/faces/v2/")]
    assert save(registry, parent="v1").version == "v3"  # the failed writer's number stays claimed


def test_concurrent_writers_get_distinct_versions(tmp_path):
    registry = ModelRegistry(LocalStore(tmp_path))
    versions: list[str] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        card = save(registry, seed=seed)
        with lock:
            versions.append(card.version)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    # Every writer gets a number: none gives up, none shares one.
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(versions)) == 6
    assert sorted(registry.versions("faces")) == sorted(versions)


def test_tampered_weights_are_data_loss(tmp_path):
    store = LocalStore(tmp_path)
    registry = ModelRegistry(store)
    card = save(registry)
    other = initialise(lambda: build_classifier(SPEC), 5)
    from safetensors.torch import save as to_bytes

    store.put(card.checkpoint.key, to_bytes(other.state_dict()))
    with pytest.raises(DataLoss, match="sha256"):
        registry.load_version("faces", card.version)
