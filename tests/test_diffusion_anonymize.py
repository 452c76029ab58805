"""The Anonymizer on a tiny trained model: shapes, determinism, receipts, batching, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer, to_tensor, to_uint8
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.errors import InvalidArgument
from veil.privacy import IDENTITY_DELTA, Mechanism, PrivacySettings


@pytest.fixture(scope="module")
def anonymizer(tiny_model_dir: Path) -> Anonymizer:
    return Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir), max_batch=4)


@pytest.fixture(scope="module")
def faces(tiny_faces: Path) -> list[np.ndarray]:
    return list(load_celeba(tiny_faces, size=16).images[:3])


def test_candidates_shapes_and_receipts(anonymizer: Anonymizer, faces: list[np.ndarray]) -> None:
    names = anonymizer.model.attribute_names
    budget = PrivacySettings.explicit(["Male"], names, {"Male": 1.0}, identity_epsilon=8.0, rho=0.3)
    out = anonymizer.anonymize(faces, budget, candidates=3, seed=11)
    assert [len(row) for row in out] == [3, 3, 3]
    item = out[1][2]
    assert item.image.shape == (16, 16, 3) and item.image.dtype == np.uint8
    r = item.receipt
    assert (r.level, r.seed, r.candidate, r.model_version, r.rho) == (-1, 11, 2, "tiny-test", 0.3)
    assert [(a.attribute, a.mechanism, a.epsilon) for a in r.attributes] == [("Male", "randomized_response", 1.0)]
    assert r.attributes[0].released_value in (-1.0, 1.0)
    assert set(r.resampled) == set(anonymizer.model.card.implied["Male"])  # No_Beard etc. follow Male
    assert r.identity_delta == IDENTITY_DELTA and r.identity_sigma == pytest.approx(r.identity_noise_multiplier * 4.0)
    import hashlib
    assert r.input_sha256 == hashlib.sha256(faces[1].tobytes()).hexdigest()
    spend = r.spend()
    assert spend is not None and spend.receipt_id == r.receipt_id
    assert {e.mechanism for e in spend.events()} == {Mechanism.RANDOMIZED_RESPONSE, Mechanism.GAUSSIAN}
    assert len({o.receipt.receipt_id for row in out for o in row}) == 9


def test_same_seed_same_release(anonymizer: Anonymizer, faces: list[np.ndarray]) -> None:
    budget = PrivacySettings.from_level(7, ["Male", "Smiling"], anonymizer.model.attribute_names)
    a = anonymizer.anonymize(faces, budget, candidates=2, seed=5)
    b = anonymizer.anonymize(faces, budget, candidates=2, seed=5)
    c = anonymizer.anonymize(faces, budget, candidates=2, seed=6)
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            assert np.array_equal(x.image, y.image)
            assert x.receipt.attributes == y.receipt.attributes
    assert any(not np.array_equal(x.image, y.image) for ra, rc in zip(a, c) for x, y in zip(ra, rc))


def test_plans_of_different_budgets_decode_together(anonymizer: Anonymizer, faces: list[np.ndarray]) -> None:
    """Micro-batching: two requests decoded in one batch give what each gives alone."""
    names = anonymizer.model.attribute_names
    prepared = anonymizer.prepare(faces)
    first = anonymizer.plan(prepared.select(0, 1), PrivacySettings.from_level(3, ["Young"], names), 2, seed=1)
    second = anonymizer.plan(prepared.select(1, 3), PrivacySettings.explicit(["Male"], names, {"Male": 0.5}), 1, seed=2)
    together = anonymizer.decode([first, second])
    alone = [anonymizer.decode([first])[0], anonymizer.decode([second])[0]]
    for got, want in zip(together, alone):
        assert len(got) == len(want)
        for x, y in zip(got, want):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_level_zero_spends_nothing(anonymizer: Anonymizer, faces: list[np.ndarray]) -> None:
    out = anonymizer.anonymize(faces[:1], PrivacySettings.from_level(0, ["Male"], anonymizer.model.attribute_names), seed=1)
    assert out[0][0].receipt.attributes == () and out[0][0].receipt.spend() is None


def test_level_zero_reconstructs_without_guidance_beside_guided_plans(anonymizer: Anonymizer,
                                                                      faces: list[np.ndarray]) -> None:
    model, names = anonymizer.model, anonymizer.model.attribute_names
    guided = Anonymizer(model, dataclasses.replace(model.card.sampling, guidance=4.0, guidance_base="null"))
    prepared = guided.prepare(faces)
    level0 = guided.plan(prepared, PrivacySettings.from_level(0, ["Male"], names), seed=1)
    flipped = guided.plan(prepared, PrivacySettings.explicit(["Male"], names, {"Male": 0.01}), seed=1)
    mixed = guided.decode([level0, flipped])  # one batch holds both plans' rows
    want = to_uint8(model.reconstruct(to_tensor(faces, 16), guided.sampling))
    for got, expected in zip(mixed[0], want):
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    alone = guided.decode([flipped])[0]
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(mixed[1], alone))
    assert any(np.abs(a.astype(int) - b.astype(int)).max() > 1 for a, b in zip(mixed[1], want))


def test_input_errors(anonymizer: Anonymizer, faces: list[np.ndarray]) -> None:
    budget = PrivacySettings.from_level(2, [], anonymizer.model.attribute_names)
    with pytest.raises(InvalidArgument, match=r"image 0: expected uint8 RGB of 16x16x3, got \(32, 32, 3\)"):
        anonymizer.anonymize([np.zeros((32, 32, 3), np.uint8)], budget)
    with pytest.raises(InvalidArgument, match="candidates must be an integer in 1..8"):
        anonymizer.anonymize(faces, budget, candidates=9)
    with pytest.raises(InvalidArgument, match="no images"):
        anonymizer.anonymize([], budget)

