"""The whole-photo path: detect (or take the caller's boxes) -> align -> anonymize every crop of
the photo in one call -> blend back. Faces the caller keeps are left alone; faces too small to
re-synthesize are obscured. Everything outside the faces' blend regions is returned bit-identical.

`prepare` and `compose` are separate so a service can batch the crops of several photos (or
several candidates) into one model call; `run` does both around one `anonymize_crops` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from veil.errors import InvalidArgument, VeilError
from veil.faces.align import DEFAULT_MARGIN, AlignedFace, FaceAligner
from veil.faces.blend import blend_face
from veil.faces.detect import Box, Detection, FaceDetector, GivenBoxes, HogDetector
from veil.faces.obscure import obscure_face

AnonymizeCrops = Callable[[list[np.ndarray]], list[np.ndarray]]
DEFAULT_MIN_FACE = 24
"""Faces whose box is smaller (shorter side, photo pixels) are obscured instead of re-synthesized:
below that the 5-point landmarks, and with them the alignment, are not reliable."""


class FaceAction(StrEnum):
    ANONYMIZED = "anonymized"
    KEPT = "kept"
    OBSCURED = "obscured"


@dataclass(frozen=True)
class FaceResult:
    box: Box
    score: float  # the detector's score; 1.0 for a caller's box
    action: FaceAction
    region: Box | None  # pixels that may differ from the input (None for a kept face)


@dataclass(frozen=True)
class PlannedFace:
    detection: Detection
    action: FaceAction
    aligned: AlignedFace | None  # for faces to anonymize


@dataclass
class PreparedPhoto:
    image: np.ndarray
    faces: list[PlannedFace]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def crops(self) -> list[np.ndarray]:
        """The aligned crops to anonymize, in face order (kept and obscured faces have none)."""
        return [f.aligned.crop for f in self.faces if f.aligned is not None]


@dataclass(frozen=True)
class PhotoResult:
    image: np.ndarray
    faces: tuple[FaceResult, ...]
    timings: dict[str, float]  # seconds: detection, alignment, anonymization (run only), blending


class FacePipeline:
    """Thread-compatible: dlib's models are shared, and each call works on its own copy."""

    def __init__(self, crop_size: int, detector: FaceDetector | None = None, margin: float = DEFAULT_MARGIN,
                 min_face: int = DEFAULT_MIN_FACE) -> None:
        if crop_size < 8:
            raise InvalidArgument(f"crop_size must be >= 8, got {crop_size}")
        if min_face < 1:
            raise InvalidArgument(f"min_face must be >= 1, got {min_face}")
        self.crop_size = crop_size
        self.detector = detector or HogDetector()
        self.aligner = FaceAligner(margin)
        self.min_face = min_face

    def detect(self, image: np.ndarray, boxes: Sequence[Box | Sequence[int]] | None = None) -> list[Detection]:
        check_image(image)
        return (GivenBoxes(boxes) if boxes is not None else self.detector).detect(image)

    def prepare(self, image: np.ndarray, boxes: Sequence[Box | Sequence[int]] | None = None,
                keep: Collection[int | Box] = ()) -> PreparedPhoto:
        """Detect (or check the caller's `boxes`) and align. `keep` names faces to leave untouched:
        by index in the face list (reading order for detections, the caller's order for boxes), or
        by a box, which keeps the face it overlaps most (intersection over union at least 0.5)."""
        start = time.perf_counter()
        detections = self.detect(image, boxes)
        detected = time.perf_counter()
        kept = _kept_indices(detections, keep)
        faces = []
        for index, detection in enumerate(detections):
            if index in kept:
                faces.append(PlannedFace(detection, FaceAction.KEPT, None))
            elif detection.box.side < self.min_face:
                faces.append(PlannedFace(detection, FaceAction.OBSCURED, None))
            else:
                aligned = self.aligner.align(image, detection, self.crop_size)
                faces.append(PlannedFace(detection, FaceAction.ANONYMIZED, aligned))
        timings = {"detection": detected - start, "alignment": time.perf_counter() - detected}
        return PreparedPhoto(image, faces, timings)

    def compose(self, prepared: PreparedPhoto, anonymized: Sequence[np.ndarray], seed: int | None = None) -> PhotoResult:
        """The photo with `anonymized` (one square uint8 RGB crop per entry of `prepared.crops`, any
        size) blended in and the small faces obscured (noise drawn from `seed`)."""
        wanted = len(prepared.crops)
        if len(anonymized) != wanted:
            raise VeilError(f"{len(anonymized)} anonymized crops for {wanted} faces")
        for crop in anonymized:
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
                raise VeilError(f"an anonymized crop must be square uint8 RGB, got {crop.dtype} {crop.shape}")
        start = time.perf_counter()
        out = prepared.image.copy()
        rng = np.random.default_rng(seed)
        crops = iter(anonymized)
        results = []
        for face in prepared.faces:
            box = face.detection.box
            region: Box | None = None
            if face.action is FaceAction.ANONYMIZED:
                region = blend_face(out, face.aligned, next(crops)).region
            elif face.action is FaceAction.OBSCURED:
                obscure_face(out, box, rng)
                region = box
            results.append(FaceResult(box, face.detection.score, face.action, region))
        timings = {**prepared.timings, "blending": time.perf_counter() - start}
        return PhotoResult(out, tuple(results), timings)

    def run(self, image: np.ndarray, anonymize_crops: AnonymizeCrops, boxes: Sequence[Box | Sequence[int]] | None = None,
            keep: Collection[int | Box] = (), seed: int | None = None) -> PhotoResult:
        """Every face of `image` anonymized: `anonymize_crops` is called once with all the photo's
        crops (not at all when there are none) and returns one crop for each."""
        prepared = self.prepare(image, boxes, keep)
        crops = prepared.crops
        start = time.perf_counter()
        anonymized = list(anonymize_crops(crops)) if crops else []
        prepared.timings["anonymization"] = time.perf_counter() - start
        return self.compose(prepared, anonymized, seed)


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidArgument("a photo must be a uint8 RGB array of shape (height, width, 3)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidArgument("the photo has no pixels")


def _kept_indices(detections: Sequence[Detection], keep: Collection[int | Box]) -> set[int]:
    kept: set[int] = set()
    for item in keep:
        if isinstance(item, Box):
            overlaps = [(d.box.iou(item), i) for i, d in enumerate(detections)]
            best = max(overlaps, default=(0.0, -1))
            if best[0] < 0.5:
                raise InvalidArgument(f"keep box {item}: no face overlaps it by half or more")
            kept.add(best[1])
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(detections):
            kept.add(item)
        else:
            raise InvalidArgument(f"keep: {str(item)[:40]} is not a face index in 0..{len(detections) - 1} or a Box")
    return kept
