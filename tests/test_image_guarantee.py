"""The image-level guarantee: which releases claim it, where it is served, and that a claiming
release's image does not depend on the original beyond the released values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer, Prepared
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.privacy import DEFAULT_LEVEL, LEVELS, PrivacySettings
from veil.privacy.convert import levels_to_proto
from veil.privacy.guarantee import NULL_GUIDANCE, SOURCE_GUIDANCE, image_level_guarantee, level_guarantee

NAMES = ["Male", "Young", "Smiling"]


def test_levels_claim_it_only_with_identity_noise_full_redraw_and_null_guidance() -> None:
    assert [level_guarantee(row, NULL_GUIDANCE) for row in LEVELS] == [False] * 5 + [True] * 6
    assert not any(level_guarantee(row, SOURCE_GUIDANCE) for row in LEVELS)
    assert level_guarantee(LEVELS[DEFAULT_LEVEL], NULL_GUIDANCE)
    served = levels_to_proto(NULL_GUIDANCE)
    assert [m.image_level_guarantee for m in served] == [level_guarantee(row, NULL_GUIDANCE) for row in LEVELS]
    assert not any(m.image_level_guarantee for m in levels_to_proto(SOURCE_GUIDANCE))


@pytest.mark.parametrize("identity, rho, claims", [
    (None, 0.0, False),  # the attribute-only release: original z_sem and x_T
    (None, 1.0, False),  # original z_sem
    (2.0, 0.99, False),  # part of the inverted x_T
    (2.0, 1.0, True),
])
def test_explicit_settings_are_judged_the_same_way(identity: float | None, rho: float, claims: bool) -> None:
    settings = PrivacySettings.explicit(["Male"], NAMES, {"Male": 1.0}, identity_epsilon=identity, rho=rho)
    assert image_level_guarantee(settings, NULL_GUIDANCE) is claims
    assert image_level_guarantee(settings, SOURCE_GUIDANCE) is False


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> DiffusionAutoencoder:
    return DiffusionAutoencoder.from_pretrained(tiny_model_dir)


def _other_original(prepared: Prepared, j: int) -> Prepared:
    """The same released inputs from another original: its predicted value of attribute `j`
    flipped (the logits the mechanism reads kept), another z_sem and another inverted x_T."""
    predicted = prepared.predicted.clone()
    predicted[:, j] = -predicted[:, j]
    z = prepared.z.roll(1, dims=0)
    x_start = torch.randn(prepared.x_start.shape, generator=torch.Generator().manual_seed(99))
    return dataclasses.replace(prepared, z=z, predicted=predicted, x_start=x_start)


@pytest.mark.parametrize("level, guidance_base, invariant", [
    (5, NULL_GUIDANCE, True),
    (10, NULL_GUIDANCE, True),
    (1, NULL_GUIDANCE, False),
    (5, SOURCE_GUIDANCE, False),
])
def test_a_claiming_release_decodes_the_same_from_another_original(
        model: DiffusionAutoencoder, tiny_faces: Path, level: int, guidance_base: str, invariant: bool) -> None:
    sampling = dataclasses.replace(model.card.sampling, guidance_base=guidance_base, guidance=2.0)
    anonymizer = Anonymizer(model, sampling, max_batch=8)
    names = model.attribute_names
    prepared = anonymizer.prepare(list(load_celeba(tiny_faces, size=16).images[:3]))
    other = _other_original(prepared, names.index("Male"))
    settings = PrivacySettings.from_level(level, ["Male"], names)
    plan = anonymizer.plan(prepared, settings, candidates=2, seed=17)
    # The identity latent after its mechanism is a released value: held fixed like the others.
    other_plan = dataclasses.replace(anonymizer.plan(other, settings, candidates=2, seed=17), z=plan.z)
    assert torch.equal(plan.released, other_plan.released)  # implied re-draws follow the released Male only
    assert plan.image_level_guarantee is invariant
    first, second = anonymizer.decode([plan, other_plan])
    same = all(np.array_equal(a, b) for a, b in zip(first, second))
    assert same is invariant
    receipts = [c.receipt for row in anonymizer.receipts(plan, first) for c in row]
    assert all(r.image_level_guarantee is invariant for r in receipts)


def test_readme_level_table_shows_the_computed_claim() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| image-level guarantee"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    assert cells == ["yes" if level_guarantee(r, NULL_GUIDANCE) else "no" for r in LEVELS]
