"""Alignment: dlib's 5-point landmarks, a similarity transform onto one fixed template, a crop
with margin at any requested resolution, and the transform that maps it back.

Coordinates are continuous: pixel (i, j) covers [i, i+1) x [j, j+1), as in PIL's transforms.
The template lives in the unit square of the *face* (ArcFace's 112-px 5-point template divided by
112, made left-right symmetric): eye centres at (0.3427, 0.4607) and (0.6573, 0.4607). dlib's
fifth point is the base of the nose, which sits just under ArcFace's nose tip (0.6405), at 0.672.
The crop is that face square grown by `margin` on every side: with the default 0.25 the eyes
are 0.21 of the crop apart and at 0.47 of its height, the framing of the synthetic training
faces (veil.data.synth) and close to FFHQ's loose crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from veil.errors import InvalidArgument
from veil.faces.detect import Box, Detection
from veil.faces.weights import LANDMARKS_5, model_file

TEMPLATE = np.array([[0.3427, 0.4607], [0.6573, 0.4607], [0.5, 0.672]])  # image-left eye, image-right eye, nose base
DEFAULT_MARGIN = 0.25


@dataclass(frozen=True)
class AlignedFace:
    """One face's crop and the similarity between the photo and the crop's unit square.

    `to_unit` (2x3) maps photo coordinates to crop coordinates in [0, 1]; `from_unit` is its inverse.
    """

    crop: np.ndarray  # uint8 (size, size, 3)
    to_unit: np.ndarray
    from_unit: np.ndarray
    landmarks: np.ndarray  # (5, 2) photo coordinates
    margin: float

    @property
    def size(self) -> int:
        return self.crop.shape[0]

    @property
    def scale(self) -> float:
        """Photo pixels per crop unit: the side of the crop's footprint in the photo."""
        return float(math.hypot(*self.from_unit[:, 0]))

    def footprint(self, image_shape: tuple[int, ...]) -> Box:
        """The part of the photo the crop covers (clipped to the photo)."""
        corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
        points = apply(self.from_unit, corners)
        height, width = image_shape[:2]
        left, top = np.floor(points.min(axis=0)).astype(int)
        right, bottom = np.ceil(points.max(axis=0)).astype(int)
        return Box(max(0, int(left)), max(0, int(top)), min(width, int(right)), min(height, int(bottom)))


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def invert(affine: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(affine[:, :2])
    return np.hstack([linear, -linear @ affine[:, 2:]])


class FaceAligner:
    """Landmarks with dlib's 5-point shape predictor (9 MB, CC0), then `align` crops."""

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        if not 0.0 <= margin <= 1.0:
            raise InvalidArgument(f"margin must be in [0, 1], got {margin}")
        self.margin = margin

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(5, 2) points in continuous photo coordinates."""
        import dlib

        shape = _predictor()(image, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
        return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64)

    def align(self, image: np.ndarray, detection: Detection, size: int) -> AlignedFace:
        if size < 8:
            raise InvalidArgument(f"crop size must be >= 8, got {size}")
        points = detection.landmarks if detection.landmarks is not None else self.landmarks(image, detection.box)
        to_unit = self._similarity(points)
        from_unit = invert(to_unit)
        return AlignedFace(warp_crop(image, from_unit, size), to_unit, from_unit, points, self.margin)

    def _similarity(self, points: np.ndarray) -> np.ndarray:
        # dlib's 5 points: two corners of one eye, two of the other, the base of the nose.
        eyes = sorted([points[0:2].mean(axis=0), points[2:4].mean(axis=0)], key=lambda p: p[0])
        source = np.array([eyes[0], eyes[1], points[4]])
        grow = 1.0 + 2.0 * self.margin
        target = (TEMPLATE + self.margin) / grow
        return similarity(source, target)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) taking source points to target
    points (Umeyama, without reflection), as a 2x3 matrix."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(t.T @ s / len(source))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sigma) @ d) / (s ** 2).sum(axis=1).mean()
    linear = scale * rotation
    return np.hstack([linear, (mu_t - linear @ mu_s)[:, None]])


def warp_crop(image: np.ndarray, from_unit: np.ndarray, size: int) -> np.ndarray:
    """The crop at `size` px. Sampled first at about the photo's own resolution and then reduced
    with an antialiasing filter, so a large face shrunk to a small crop does not alias."""
    footprint = math.hypot(*from_unit[:, 0])
    work = max(size, math.ceil(footprint))
    per_pixel = from_unit[:, :2] / work  # work-crop pixel -> photo
    data = (*per_pixel[0], from_unit[0, 2], *per_pixel[1], from_unit[1, 2])
    crop = Image.fromarray(image).transform((work, work), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    if work != size:
        crop = crop.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(crop)


@cache
def _predictor():
    import dlib

    return dlib.shape_predictor(str(model_file(LANDMARKS_5)))
