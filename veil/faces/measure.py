"""Measurements of the whole-photo path on real photos shipped with scikit-image: detector recall
and false positives (lfw_subset), real-face identity left after anonymization (dlib's face
recognizer), latency per stage, and seams (PSNR outside and around faces).

scikit-image is a development dependency (the `faces-eval` extra): imported only here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from veil.faces.align import _predictor
from veil.faces.blend import face_weight
from veil.faces.detect import Box, FaceDetector
from veil.faces.pipeline import AnonymizeCrops, FaceAction, FacePipeline, PreparedPhoto
from veil.faces.weights import FACE_RECOGNITION, model_file

LFW_SCALE = 4
"""lfw_subset's 25-px faces are upscaled to 100 px, the size of a face in an ordinary portrait."""


def lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """lfw_subset's 100 faces and 100 non-faces, uint8 grey (25, 25)."""
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    return images[:100], images[100:]


def upscaled(grey: np.ndarray, scale: int = LFW_SCALE, pad: float = 0.5) -> np.ndarray:
    """A grey patch upscaled `scale` times, on an edge-extended canvas `pad` of its side wider on
    each side (a detector needs some context around a face), as RGB."""
    side = grey.shape[0] * scale
    big = np.asarray(Image.fromarray(grey).resize((side, side), Image.Resampling.BICUBIC))
    border = round(side * pad)
    return np.repeat(np.pad(big, border, mode="edge")[..., None], 3, axis=2)


SAME_PERSON = 0.6
"""dlib's face recognizer: two descriptors closer than this are the same person (99.38% on LFW)."""


@cache
def _recognizer():
    import dlib

    return dlib.face_recognition_model_v1(str(model_file(FACE_RECOGNITION)))


def face_descriptor(image: np.ndarray, box: Box) -> np.ndarray:
    """dlib's 128-d face descriptor of the face in `box` (landmarks located afresh in `image`)."""
    import dlib

    shape = _predictor()(image, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
    return np.array(_recognizer().compute_face_descriptor(image, shape))


def identity_distances(pipeline: FacePipeline, anonymize_crops: AnonymizeCrops, photos: Sequence[np.ndarray],
                       boxes: Sequence[Box]) -> list[float]:
    """Per photo: the recognizer's distance between the face in `boxes[i]` before and after the
    whole photo went through `pipeline` with that box (all photos' crops in one call)."""
    prepared = [pipeline.prepare(photo, [box]) for photo, box in zip(photos, boxes)]
    anonymized = iter(anonymize_crops([crop for p in prepared for crop in p.crops]))
    distances = []
    for photo, box, prep in zip(photos, boxes, prepared):
        result = pipeline.compose(prep, [next(anonymized) for _ in prep.crops])
        distances.append(float(np.linalg.norm(face_descriptor(photo, box) - face_descriptor(result.image, box))))
    return distances


@dataclass(frozen=True)
class IdentityLeft:
    """How many anonymized faces dlib's recognizer still matches to their original."""

    matched: int
    faces: int
    median_distance: float

    @property
    def rate(self) -> float:
        return self.matched / self.faces if self.faces else 0.0


def lfw_identity_photos(detector: FaceDetector, limit: int,
                        scale: int = LFW_SCALE) -> tuple[list[np.ndarray], list[Box]]:
    """Up to `limit` upscaled lfw_subset faces the detector finds, with the box it found (a face
    it misses is a detection figure, not an identity one)."""
    photos, boxes = [], []
    for face in lfw_subset()[0][:limit]:
        canvas = upscaled(face, scale)
        border = (canvas.shape[0] - face.shape[0] * scale) // 2
        inside = Box(border, border, canvas.shape[0] - border, canvas.shape[0] - border)
        found = [d.box for d in detector.detect(canvas) if _centre_inside(d.box, inside)]
        if found:
            photos.append(canvas)
            boxes.append(found[0])
    return photos, boxes


def identity_left(distances: Sequence[float]) -> IdentityLeft:
    return IdentityLeft(sum(d < SAME_PERSON for d in distances), len(distances),
                        float(np.median(distances)) if distances else float("nan"))


@dataclass(frozen=True)
class DetectorCounts:
    faces_found: int
    faces: int
    false_positive_images: int  # non-face images with at least one detection
    non_faces: int

    @property
    def recall(self) -> float:
        return self.faces_found / self.faces


def detector_counts(detector: FaceDetector, scale: int = LFW_SCALE) -> DetectorCounts:
    """A face counts as found when a detection's centre falls inside it."""
    faces, non_faces = lfw_subset()
    found = 0
    for face in faces:
        canvas = upscaled(face, scale)
        border = (canvas.shape[0] - face.shape[0] * scale) // 2
        inside = Box(border, border, canvas.shape[0] - border, canvas.shape[0] - border)
        found += any(_centre_inside(d.box, inside) for d in detector.detect(canvas))
    false = sum(bool(detector.detect(upscaled(image, scale))) for image in non_faces)
    return DetectorCounts(found, len(faces), false, len(non_faces))


def _centre_inside(box: Box, region: Box) -> bool:
    x, y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    return region.left <= x < region.right and region.top <= y < region.bottom


def group_photo(faces: int, side: int = 1024, face_px: int = 160, seed: int = 0) -> tuple[np.ndarray, list[Box]]:
    """A `side` px photo with `faces` lfw_subset faces (upscaled to `face_px`, in colour-tinted
    grey) in a row on scikit-image's `coffee` photo (which has no face); also where the faces are."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photo = np.array(Image.fromarray(data.coffee()).resize((side, side * 3 // 4), Image.Resampling.BICUBIC))
    chosen = rng.choice(100, size=faces, replace=False)
    lfw, _ = lfw_subset()
    step = photo.shape[1] // faces
    boxes = []
    for slot, index in enumerate(chosen):
        grey = np.asarray(Image.fromarray(lfw[index]).resize((face_px, face_px), Image.Resampling.BICUBIC))
        tint = np.array([1.0, 0.85, 0.75])  # skin-like, so the colour match has colour to match
        left = slot * step + (step - face_px) // 2
        top = (photo.shape[0] - face_px) // 2
        photo[top:top + face_px, left:left + face_px] = (grey[..., None] * tint).astype(np.uint8)
        boxes.append(Box(left, top, left + face_px, top + face_px))
    return photo, boxes


@dataclass(frozen=True)
class Seams:
    outside_psnr: float  # over pixels outside every blend region; inf when they are bit-identical
    ring_psnr: list[float]  # per anonymized face: over its feathered band (0 < weight < 1)


def seams(prepared: PreparedPhoto, result: np.ndarray) -> Seams:
    original = prepared.image
    changed = np.zeros(original.shape[:2], dtype=bool)
    rings = []
    for face in prepared.faces:
        if face.action is FaceAction.ANONYMIZED:
            region, weight = face_weight(face.aligned, original.shape)
            window = (slice(region.top, region.bottom), slice(region.left, region.right))
            changed[window] |= weight > 0
            band = (weight > 0) & (weight < 1)
            rings.append(psnr(original[window][band], result[window][band]))
        elif face.action is FaceAction.OBSCURED:
            box = face.detection.box
            changed[box.top:box.bottom, box.left:box.right] = True
    return Seams(psnr(original[~changed], result[~changed]), rings)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def stage_latency(pipeline: FacePipeline, anonymize_crops: AnonymizeCrops, photos: Sequence[np.ndarray],
                  boxes: Sequence[Sequence[Box]] | None = None) -> dict[str, float]:
    """Median seconds per stage over `photos` (detection / alignment / anonymization / blending)."""
    runs = [pipeline.run(photo, anonymize_crops, None if boxes is None else boxes[i]).timings
            for i, photo in enumerate(photos)]
    return {stage: float(np.median([r[stage] for r in runs])) for stage in runs[0]}
