"""Verified edits on the tiny model: what is offered reads as released; tries are bounded and recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer, Prepared
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.diffusion.verify import EditVerifier, VerifiedCandidate
from veil.errors import InvalidArgument
from veil.privacy import PrivacySettings

PROTECT = ["Male", "Young"]


@pytest.fixture(scope="module")
def anonymizer(tiny_model_dir: Path) -> Anonymizer:
    return Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir), max_batch=8)


@pytest.fixture(scope="module")
def prepared(anonymizer: Anonymizer, tiny_faces: Path) -> Prepared:
    return anonymizer.prepare(list(load_celeba(tiny_faces, size=16).images[:4]))


def settings(anonymizer: Anonymizer) -> PrivacySettings:
    return PrivacySettings.explicit(PROTECT, anonymizer.model.attribute_names, {"Male": 0.5, "Young": 0.5})


def verifying(anonymizer: Anonymizer, tries: int) -> Anonymizer:
    """The same model and sampling, with verified edits of at most `tries` decodes."""
    return Anonymizer(anonymizer.model, anonymizer.sampling, anonymizer.max_batch, decode_tries=tries)


def flat(rows: list[list[VerifiedCandidate]]) -> list[VerifiedCandidate]:
    return [c for row in rows for c in row]


def assert_verified(anonymizer: Anonymizer, candidates: list[VerifiedCandidate], max_tries: int) -> None:
    """Offered: reads as released, tries recorded; refused: every try spent, the attributes named."""
    names = anonymizer.model.attribute_names
    for c in candidates:
        assert 1 <= c.tries <= max_tries and c.receipt.decode_tries == c.tries
        released = {a.attribute: a.released_value for a in c.receipt.attributes}
        if c.offered:
            assert c.image.receipt == c.receipt and not c.disagreeing
            logits = anonymizer.read_attributes([c.image.image])[0]
            for attr in released:
                assert (float(logits[names.index(attr)]) >= 0) == (released[attr] > 0)
        else:
            assert c.tries == max_tries and c.disagreeing and set(c.disagreeing) <= set(released)


def test_offered_candidates_read_as_released(anonymizer: Anonymizer, prepared: Prepared) -> None:
    once = flat(verifying(anonymizer, 1).verified(prepared, settings(anonymizer), candidates=2, seed=5))
    assert all(c.tries == 1 for c in once)
    verified = flat(verifying(anonymizer, 3).verified(prepared, settings(anonymizer), candidates=2, seed=5))
    assert len(verified) == 8 and all(1 <= c.tries <= 3 for c in verified)
    # The same seed gives the same first decode: a candidate right at once is kept as it was, one
    # wrong at once is decoded again.
    for first, c in zip(once, verified):
        if first.offered:
            assert c.tries == 1 and np.array_equal(first.image.image, c.image.image)
        else:
            assert c.tries >= 2
    assert_verified(anonymizer, verified, 3)
    assert sum(not c.offered for c in verified) <= sum(not c.offered for c in once)
    with pytest.raises(InvalidArgument):
        EditVerifier(anonymizer, max_tries=0)


def test_a_configured_anonymizer_verifies_each_plan_of_a_shared_decode(tiny_model_dir: Path,
                                                                       prepared: Prepared) -> None:
    """The batcher's path: plans of two requests decoded together, then `offers` per plan."""
    model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    checked = Anonymizer(model, max_batch=8, decode_tries=3)
    laplace = PrivacySettings.explicit(["Male"], model.attribute_names, {"Male": 1.0}, mechanism="laplace")
    plans = [checked.plan(prepared.select(0, 2), settings(checked), candidates=2, seed=5),
             checked.plan(prepared.select(2, 4), laplace, candidates=1, seed=6)]
    rr, lap = [checked.offers(plan, pixels) for plan, pixels in zip(plans, checked.decode(plans))]
    assert len(flat(rr)) == 4
    assert_verified(checked, flat(rr), 3)
    # A laplace value has no class to read: offered at the first decode.
    assert [(c.offered, c.tries) for c in flat(lap)] == [(True, 1), (True, 1)]
    # release() offers only the verified candidates; unconfigured, every one as first decoded.
    offered = checked.release(prepared.select(0, 2), settings(checked), candidates=2, seed=5)
    assert [len(row) for row in offered] == [sum(c.offered for c in row) for row in rr]
    unchecked = Anonymizer(model, max_batch=8).release(prepared.select(0, 2), settings(checked), candidates=2, seed=5)
    assert [len(row) for row in unchecked] == [2, 2]
    assert all(c.receipt.decode_tries == 1 for row in unchecked for c in row)
