"""The whole-photo path on real photos (scikit-image's astronaut, lfw_subset faces, coffee) with
dlib's real detector and landmarks, and the tiny diffusion model as the anonymizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.errors import InvalidArgument
from veil.faces import Box, FaceAction, FacePipeline, HogDetector, PhotoResult
from veil.faces.measure import (SAME_PERSON, face_descriptor, group_photo, identity_left, lfw_identity_photos,
                                seams)
from veil.privacy import PrivacySettings

ASTRONAUT_FACE = Box(179, 83, 266, 170)  # where dlib's HOG finds it without upsampling


@pytest.fixture(scope="module")
def anonymize_crops(tiny_model_dir: Path):
    anonymizer = Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir, device="cpu"))
    settings = PrivacySettings.from_level(8, ["Male"], anonymizer.model.attribute_names)
    calls: list[int] = []

    def run(crops: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(crops))
        return [c[0].image for c in anonymizer.anonymize(crops, settings, 1, seed=len(calls))]

    run.calls = calls
    run.size = anonymizer.model.image_size
    return run


@pytest.fixture(scope="module")
def pipeline(anonymize_crops) -> FacePipeline:
    # Every face here is 87 px or more, which HOG finds without upsampling (a quarter of the cost);
    # the default detector (upsample 1) runs on astronaut in tests/test_cli_anonymize.py.
    return FacePipeline(anonymize_crops.size, HogDetector(upsample=0))


def _changed_outside(original: np.ndarray, result: PhotoResult) -> int:
    outside = np.ones(original.shape[:2], dtype=bool)
    for face in result.faces:
        if face.region is not None:
            outside[face.region.top:face.region.bottom, face.region.left:face.region.right] = False
    return int(np.any(original[outside] != result.image[outside], axis=-1).sum())



def test_astronaut_face_is_found_replaced_and_the_rest_is_untouched(pipeline, anonymize_crops) -> None:
    photo = data.astronaut()
    result = pipeline.run(photo, anonymize_crops, seed=1)
    face = max(result.faces, key=lambda f: f.box.iou(ASTRONAUT_FACE))
    assert face.box.iou(ASTRONAUT_FACE) > 0.6 and face.action is FaceAction.ANONYMIZED and face.score > 0.5
    assert _changed_outside(photo, result) == 0
    inner = (slice(face.box.top + 20, face.box.bottom - 20), slice(face.box.left + 20, face.box.right - 20))
    assert np.abs(photo[inner].astype(int) - result.image[inner]).mean() > 10
    distance = np.linalg.norm(face_descriptor(photo, face.box) - face_descriptor(result.image, face.box))
    assert distance > SAME_PERSON
    assert anonymize_crops.calls[-1] == len(result.faces)  # one call with every crop of the photo
    measured = seams(pipeline.prepare(photo, [f.box for f in result.faces]), result.image)  # no second search
    assert measured.outside_psnr == float("inf")


def test_group_photo_every_face_found_and_changed(pipeline, anonymize_crops) -> None:
    photo, truth = group_photo(5, side=1024, face_px=150, seed=2)
    result = pipeline.run(photo, anonymize_crops, seed=2)
    for box in truth:
        match = max(result.faces, key=lambda f: f.box.iou(box))
        assert match.box.iou(box) > 0.3 and match.action is FaceAction.ANONYMIZED, box
        inner = (slice(box.top + 40, box.bottom - 40), slice(box.left + 40, box.right - 40))
        assert np.abs(photo[inner].astype(int) - result.image[inner]).mean() > 5
    assert _changed_outside(photo, result) == 0


def test_photo_without_a_face_comes_back_unchanged(pipeline, anonymize_crops) -> None:
    calls = len(anonymize_crops.calls)
    photo = data.coffee()
    result = pipeline.run(photo, anonymize_crops)
    assert result.faces == () and np.array_equal(result.image, photo)
    assert len(anonymize_crops.calls) == calls


def test_caller_boxes_keep_and_tiny_faces(pipeline, anonymize_crops) -> None:
    photo = data.astronaut()
    tiny = Box(20, 20, 36, 36)
    result = pipeline.run(photo, anonymize_crops, boxes=[ASTRONAUT_FACE, tiny, (300, 300, 400, 400)], keep=[2], seed=3)
    assert [f.action for f in result.faces] == [FaceAction.ANONYMIZED, FaceAction.OBSCURED, FaceAction.KEPT]
    assert [f.score for f in result.faces] == [1.0, 1.0, 1.0] and result.faces[0].box == ASTRONAUT_FACE
    assert np.abs(photo[20:36, 20:36].astype(int) - result.image[20:36, 20:36]).mean() > 5
    assert _changed_outside(photo, result) == 0
    kept = pipeline.run(photo, anonymize_crops, keep=[Box(176, 80, 266, 168)])
    assert kept.faces[0].action is FaceAction.KEPT and kept.faces[0].region is None
    assert np.array_equal(kept.image[60:190, 160:290], photo[60:190, 160:290])


@pytest.mark.parametrize(("boxes", "message"), [
    ([(0, 0, 10, 10), (500, 500, 520, 520)], "box 1 (500, 500, 520, 520): outside the 512x512 image"),
    ([(10, 10, 10, 30)], "box 0 (10, 10, 10, 30): width and height must be positive"),
    ([(1, 2, 3)], "box 0: expected four integers"),
])
def test_bad_caller_boxes(pipeline, anonymize_crops, boxes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipeline.run(data.astronaut(), anonymize_crops, boxes=boxes)


def test_keep_that_matches_no_face(pipeline, anonymize_crops) -> None:
    with pytest.raises(InvalidArgument, match="keep box"):
        pipeline.run(data.astronaut(), anonymize_crops, keep=[Box(0, 0, 50, 50)])
    with pytest.raises(InvalidArgument, match="keep: 7 is not a face index"):
        pipeline.run(data.astronaut(), anonymize_crops, keep=[7])


def test_4096_px_photo_is_searched_downscaled(pipeline, anonymize_crops) -> None:
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((4096, 4096), Image.Resampling.BICUBIC))
    result = pipeline.run(photo, anonymize_crops, seed=4)
    face = result.faces[0]
    assert face.box.iou(Box(*(8 * v for v in ASTRONAUT_FACE.as_tuple()))) > 0.6
    assert _changed_outside(photo, result) == 0


def test_identity_left_counts_faces_under_the_same_person_threshold():
    left = identity_left([0.2, 0.59, 0.6, 0.9])
    assert (left.matched, left.faces, left.rate) == (2, 4, 0.5)
    assert left.median_distance == pytest.approx(0.595)
    photos, boxes = lfw_identity_photos(HogDetector(upsample=0), 3)
    assert 1 <= len(photos) == len(boxes) <= 3
    assert all(photo.shape[0] == 200 and box.width > 50 for photo, box in zip(photos, boxes))
