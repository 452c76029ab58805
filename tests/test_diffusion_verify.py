"""Verified edits on the tiny model: what is offered reads as released; tries are bounded and recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer, to_tensor
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.diffusion.verify import EditVerifier
from veil.errors import InvalidArgument
from veil.privacy import PrivacySettings


def test_offered_candidates_read_as_released(tiny_model_dir: Path, tiny_faces: Path) -> None:
    anonymizer = Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir), max_batch=8)
    model, names = anonymizer.model, anonymizer.model.attribute_names
    prepared = anonymizer.prepare(list(load_celeba(tiny_faces, size=16).images[:4]))
    budget = PrivacySettings.explicit(["Male", "Young"], names, {"Male": 0.5, "Young": 0.5})
    once = EditVerifier(anonymizer, max_tries=1).release(prepared, budget, candidates=2, seed=5)
    assert all(c.tries == 1 for row in once for c in row)
    rounds = EditVerifier(anonymizer, max_tries=3).release(prepared, budget, candidates=2, seed=5)
    flat = [c for row in rounds for c in row]
    assert len(flat) == 8 and all(1 <= c.tries <= 3 for c in flat)
    # The same seed gives the same first decode: a candidate right at once is kept as it was, one
    # wrong at once is decoded again.
    for first, verified in zip([c for row in once for c in row], flat):
        if first.offered:
            assert verified.tries == 1 and np.array_equal(first.image.image, verified.image.image)
        else:
            assert verified.tries >= 2
    for c in flat:
        if c.offered:
            assert c.image.receipt.decode_tries == c.tries and not c.disagreeing
            released = {a.attribute: a.released_value for a in c.image.receipt.attributes}
            logits = model.attribute_logits(to_tensor([c.image.image], model.image_size))[0]
            for attr in ("Male", "Young"):
                assert (float(logits[names.index(attr)]) >= 0) == (released[attr] > 0)
        else:
            assert c.tries == 3 and set(c.disagreeing) <= {"Male", "Young"} and c.disagreeing
    refused_once = sum(not c.offered for row in once for c in row)
    assert sum(not c.offered for c in flat) <= refused_once  # retries only ever recover candidates
    with pytest.raises(InvalidArgument):
        EditVerifier(anonymizer, max_tries=0)
