"""Face detection: a small interface, dlib's HOG and MMOD detectors, and caller-supplied boxes.

A missed face is a privacy leak, so the defaults lean towards recall (HOG with one upsampling,
dlib's own 0.0 threshold). Photos larger than a working size are searched on a downscaled copy,
which caps the detector's time and memory; boxes are mapped back to the photo's pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np
from PIL import Image

from veil.errors import InvalidArgument
from veil.faces.weights import MMOD_DETECTOR, model_file

DEFAULT_WORKING_SIDE = 1024
"""Longest side the detectors search; larger photos are searched on a downscaled copy."""


@dataclass(frozen=True)
class Box:
    """A pixel rectangle: columns left..right-1, rows top..bottom-1."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def side(self) -> int:
        """The shorter side: what decides whether a face is big enough to re-synthesize."""
        return min(self.width, self.height)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom

    def iou(self, other: Box) -> float:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(w, 0) * max(h, 0)
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union else 0.0

    def __str__(self) -> str:
        return f"({self.left}, {self.top}, {self.right}, {self.bottom})"


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    landmarks: np.ndarray | None = None  # (5, 2) x, y in continuous pixel coordinates, when the detector gives them


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 RGB (H, W, 3) image, in reading order (top to bottom, left to right)."""
        ...


def reading_order(detections: Iterable[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.box.top, d.box.left, d.box.bottom, d.box.right))


class _WorkingSizeDetector:
    """Runs `_detect_at_working_size` on a copy no larger than `working_side` and maps boxes back."""

    def __init__(self, working_side: int) -> None:
        if working_side < 64:
            raise InvalidArgument(f"working_side must be >= 64, got {working_side}")
        self.working_side = working_side

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        scale = min(1.0, self.working_side / max(height, width))
        work = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        found = []
        for (left, top, right, bottom), score in self._detect_at_working_size(np.ascontiguousarray(work)):
            box = Box(max(0, int(np.floor(left / scale))), max(0, int(np.floor(top / scale))),
                      min(width, int(np.ceil(right / scale))), min(height, int(np.ceil(bottom / scale))))
            if box.width > 0 and box.height > 0:
                found.append(Detection(box, float(score)))
        return reading_order(found)

    def _detect_at_working_size(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        raise NotImplementedError


class HogDetector(_WorkingSizeDetector):
    """dlib's frontal HOG detector. Each upsampling doubles the searched size: faces down to about
    80 px are found with 0, 40 px with 1, 20 px with 2 (at a 4x cost each)."""

    def __init__(self, upsample: int = 1, threshold: float = 0.0, working_side: int = DEFAULT_WORKING_SIDE) -> None:
        super().__init__(working_side)
        if not 0 <= upsample <= 3:
            raise InvalidArgument(f"upsample must be in 0..3, got {upsample}")
        self.upsample = upsample
        self.threshold = threshold

    def _detect_at_working_size(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        rects, scores, _ = _hog().run(image, self.upsample, self.threshold)
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), s) for r, s in zip(rects, scores)]


class MmodDetector(_WorkingSizeDetector):
    """dlib's MMOD CNN detector: better on turned and small faces, seconds per photo on a CPU (for
    GPU nodes; dlib uses CUDA when it was built with it)."""

    def __init__(self, upsample: int = 0, working_side: int = DEFAULT_WORKING_SIDE) -> None:
        super().__init__(working_side)
        if not 0 <= upsample <= 2:
            raise InvalidArgument(f"upsample must be in 0..2, got {upsample}")
        self.upsample = upsample

    def _detect_at_working_size(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        found = _mmod()(image, self.upsample)
        return [((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), d.confidence) for d in found]


class GivenBoxes:
    """The caller's own boxes (services that run their own detector), checked against the image."""

    def __init__(self, boxes: Sequence[Box | Sequence[int]]) -> None:
        self.boxes = [_as_box(b, i) for i, b in enumerate(boxes)]

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        for index, box in enumerate(self.boxes):
            if box.width <= 0 or box.height <= 0:
                raise InvalidArgument(f"box {index} {box}: width and height must be positive")
            if box.left < 0 or box.top < 0 or box.right > width or box.bottom > height:
                raise InvalidArgument(f"box {index} {box}: outside the {width}x{height} image")
        return [Detection(box, 1.0) for box in self.boxes]


def _as_box(value: Box | Sequence[int], index: int) -> Box:
    if isinstance(value, Box):
        return value
    try:
        left, top, right, bottom = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"box {index}: expected four integers (left, top, right, bottom)") from None
    return Box(left, top, right, bottom)


@cache
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


@cache
def _mmod():
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_file(MMOD_DETECTOR)))
