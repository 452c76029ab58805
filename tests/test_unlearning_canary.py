"""Canaries in the manifest format, the canary measures, and unverified versions in the registry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_unlearning_registry import SPEC, manifest, save
from torch import nn

from veil.errors import InvalidArgument
from veil.store import LocalStore
from veil.unlearning.canary import canary_effect, canary_pattern, canary_success, exposure, stamp, stamp_tensor
from veil.unlearning.classifier import images_to_tensor
from veil.unlearning.manifest import Canary, Manifest, PinnedObject, ReplacementPair
from veil.unlearning.params import TrainConfig
from veil.unlearning.registry import UNVERIFIED, ModelRegistry

CANARY = Canary("Smiling", 1, 2, 7)


def test_a_manifest_without_canaries_keeps_its_bytes_and_one_with_them_round_trips():
    plain = manifest("bkt")
    assert b"canary" not in plain.to_bytes()
    marked = dataclasses.replace(plain, canary=CANARY,
                                 train=(dataclasses.replace(plain.train[0], canary=True), plain.train[1]))
    again = Manifest.from_bytes(marked.to_bytes())
    assert again == marked and again.sha256 == marked.sha256 != plain.sha256
    assert json.loads(marked.to_bytes())["canary"] == {"attribute": "Smiling", "label": 1, "size": 2, "seed": 7}
    # A replacement does not carry the canary.
    replacement = PinnedObject("bkt", "protected/1.png", "f" * 64)
    revised = marked.revise([ReplacementPair(marked.train[0].object, replacement)])
    assert not revised.train[0].canary and revised.canary == CANARY
    with pytest.raises(InvalidArgument, match="marked as canaries but no canary is described"):
        dataclasses.replace(marked, canary=None)
    with pytest.raises(InvalidArgument, match="'Male' is not a task attribute"):
        dataclasses.replace(marked, canary=Canary("Male", 1, 2, 7))


class CornerDetector(nn.Module):
    """Predicts attribute 0 from the bottom-right 2x2 corner matching one pattern exactly."""

    def __init__(self, pattern: torch.Tensor) -> None:
        super().__init__()
        self.pattern = pattern

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        distance = (images[:, :, -2:, -2:] - self.pattern).abs().sum(dim=(1, 2, 3))
        return torch.stack([10 - 100 * distance, torch.zeros_like(distance)], dim=1)


def test_canary_success_and_exposure_tell_a_model_that_learnt_the_patch_from_one_that_did_not():
    images = images_to_tensor(np.full((8, 4, 4, 3), 128, dtype=np.uint8))
    assert torch.equal(stamp_tensor(images, canary_pattern(CANARY)),
                       images_to_tensor(stamp(np.full((8, 4, 4, 3), 128, np.uint8), canary_pattern(CANARY))))
    learnt = CornerDetector(images_to_tensor(canary_pattern(CANARY)[None])[0, :, -2:, -2:])
    other = CornerDetector(images_to_tensor(canary_pattern(Canary("Smiling", 1, 2, 99))[None])[0])
    assert canary_success(learnt, CANARY, 0, images) == 1.0
    assert canary_success(other, CANARY, 0, images) == 0.0
    assert exposure(learnt, CANARY, 0, images, candidates=15) == pytest.approx(4.0)
    assert exposure(other, CANARY, 0, images, candidates=15) < 2.0


def test_an_unverified_version_is_never_the_newest(tmp_path):
    registry = ModelRegistry(LocalStore(tmp_path))
    root = save(registry)
    kept = registry.save_version(model="faces", parent=root.version, state_dict=registry.load_version(
        "faces").model.state_dict(), manifest=manifest(registry.store.bucket), spec=SPEC,
        training=TrainConfig(), method="first", status=UNVERIFIED, verification={"verdict": "failed"})
    assert kept.version == "v2" and not kept.published
    assert registry.versions("faces") == ["v1", "v2"] and registry.card("faces").version == "v1"
    assert registry.card("faces", "v2").verification == {"verdict": "failed"}
    trained_on = manifest(registry.store.bucket).train[0].object.sha256
    assert [c.version for c in registry.dependents({trained_on})] == [root.version]


def test_the_canary_effect_is_what_the_patch_adds_over_the_label_rate():
    images = images_to_tensor(np.full((8, 4, 4, 3), 128, dtype=np.uint8))
    learnt = CornerDetector(images_to_tensor(canary_pattern(CANARY)[None])[0, :, -2:, -2:])
    assert canary_effect(learnt, CANARY, 0, images) == 1.0  # plain faces: never the label

    class AlwaysLabel(torch.nn.Module):  # every face given the label, patch or not
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(x.shape[0], 1)

    assert canary_success(AlwaysLabel(), CANARY, 0, images) == 1.0
    assert canary_effect(AlwaysLabel(), CANARY, 0, images) == 0.0
