"""Whole-photo candidates (veil.diffusion.photos) on the tiny model: one refused face refuses its
candidate, which then has no pixels and names the face; the offered ones are the composed photo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from skimage import data

from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.photos import compose_candidates
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.faces import Box, FaceAction, FacePipeline
from veil.faces.photo import Photo
from veil.privacy import PrivacySettings

BOXES = [Box(179, 83, 266, 170), Box(300, 300, 380, 380)]


def test_a_face_that_never_reads_as_released_refuses_its_candidate(tiny_model_dir: Path) -> None:
    model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    anonymizer = Anonymizer(model, dataclasses.replace(model.card.sampling, steps=2), decode_tries=1)
    settings = PrivacySettings.from_level(3, ["Male", "Young"], model.attribute_names)
    photo = Photo(data.astronaut(), "PNG")
    pipeline = FacePipeline(model.image_size)
    prepared = pipeline.prepare(photo.pixels, BOXES)
    assert len(prepared.crops) == 2

    def mixed(rows) -> bool:  # some candidate with one face offered and the other refused
        return any(rows[0][c].offered != rows[1][c].offered for c in range(3)) and any(
            rows[0][c].offered and rows[1][c].offered for c in range(3))

    seed, crops = next((s, rows) for s in range(1, 80)
                       for rows in [anonymizer.verified(anonymizer.prepare(prepared.crops), settings, 3, s)]
                       if mixed(rows))
    released = compose_candidates(pipeline, photo, prepared, crops, 3, seed)
    assert len(released) == 3
    for c, candidate in enumerate(released):
        releases = [crops[0][c], crops[1][c]]
        assert [f.release for f in candidate.faces] == releases
        assert [f.result.action for f in candidate.faces] == [FaceAction.ANONYMIZED] * 2
        if all(r.offered for r in releases):
            composed = pipeline.compose(prepared, [r.image.image for r in releases], seed + c)
            assert candidate.offered and candidate.refusal == ""
            assert np.array_equal(candidate.photo.pixels, composed.image)
            assert [f.result for f in candidate.faces] == list(composed.faces)
        else:
            wrong = [i for i, r in enumerate(releases) if not r.offered]
            assert candidate.photo is None and all(f.result.region is None for f in candidate.faces)
            assert candidate.refusal == "; ".join(
                f"face {i} still read {', '.join(releases[i].disagreeing)} otherwise than released after 1 decode(s)"
                for i in wrong)
            faces = candidate.receipt_json()["faces"]
            assert [f["unverified_attributes"] for f in faces] == [list(r.disagreeing) for r in releases]
