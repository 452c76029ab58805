"""Putting an anonymized crop back: colour match, smooth upsampling, inverse warp, feathered mask.

The mask is an ellipse around the face (in the crop's unit square, so it follows the face's
rotation and scale) with a smooth fall-off between an inner and an outer ellipse: an eroded,
blurred ellipse evaluated exactly, so it is exactly 0 outside the outer ellipse and those pixels
are the input's own, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from veil.faces.align import AlignedFace
from veil.faces.detect import Box

# The face ellipse in the face square (see veil.faces.align): forehead to chin, cheek to cheek.
FACE_CENTRE = (0.5, 0.56)
FACE_RADII = (0.42, 0.52)
FEATHER = 0.25
"""Fraction of the ellipse's radius over which the anonymized face fades into the photo."""
MAX_GAIN = 2.0
"""The colour match never scales a channel's contrast by more than this (or less than its inverse)."""


@dataclass(frozen=True)
class BlendedFace:
    region: Box  # where pixels may have changed; everything outside is the input's own
    weight: np.ndarray  # float32 (region.height, region.width) in [0, 1]: the anonymized crop's share


def ellipse_weight(u: np.ndarray, v: np.ndarray, margin: float) -> np.ndarray:
    """The mask at points given in crop unit coordinates (u across, v down; broadcast together):
    1 inside the inner ellipse, 0 outside the outer one, a smoothstep in between."""
    grow = 1.0 + 2.0 * margin
    centre_u, centre_v = ((np.array(FACE_CENTRE) + margin) / grow).tolist()
    radius_u, radius_v = (np.array(FACE_RADII) / grow).tolist()
    r = np.sqrt(((u - centre_u) / radius_u) ** 2 + ((v - centre_v) / radius_v) ** 2)
    t = np.clip((1.0 - r) / FEATHER, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def face_weight(face: AlignedFace, image_shape: tuple[int, ...]) -> tuple[Box, np.ndarray]:
    """The mask over the face's footprint in the photo, evaluated at pixel centres."""
    region = face.footprint(image_shape)
    # The affine map evaluated by broadcasting a row of x against a column of y: a large face's
    # footprint has millions of pixels, and no (h, w, 2) coordinate array is built.
    xs = np.arange(region.left, region.right, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(region.top, region.bottom, dtype=np.float64)[:, None] + 0.5
    (a, b, c), (d, e, f) = face.to_unit.tolist()
    return region, ellipse_weight(a * xs + b * ys + c, d * xs + e * ys + f, face.margin)


def match_colour(anonymized: np.ndarray, original: np.ndarray, margin: float) -> np.ndarray:
    """Shift and scale each channel of the anonymized crop so that, inside the inner face
    ellipse (skin, mostly), its mean and spread equal the original face's."""
    size = anonymized.shape[0]
    centres = (np.arange(size) + 0.5) / size
    core = ellipse_weight(centres[None, :], centres[:, None], margin) >= 1.0
    if original.shape[:2] != anonymized.shape[:2]:
        original = np.asarray(Image.fromarray(original).resize((size, size), Image.Resampling.LANCZOS))
    src = anonymized.astype(np.float32)
    ref = original.astype(np.float32)
    mean_s, std_s = src[core].mean(axis=0), src[core].std(axis=0)
    mean_r, std_r = ref[core].mean(axis=0), ref[core].std(axis=0)
    gain = np.clip(std_r / np.maximum(std_s, 1.0), 1.0 / MAX_GAIN, MAX_GAIN)
    return np.clip((src - mean_s) * gain + mean_r, 0, 255).round().astype(np.uint8)


def blend_face(image: np.ndarray, face: AlignedFace, anonymized: np.ndarray) -> BlendedFace:
    """Blend one anonymized crop (any square size) into `image`, in place; returns where."""
    matched = match_colour(anonymized, face.crop, face.margin)
    region, weight = face_weight(face, image.shape)
    if region.width <= 0 or region.height <= 0:
        return BlendedFace(region, weight)
    # Upsample the crop smoothly to about the face's size in the photo, then warp it back.
    work = max(matched.shape[0], int(np.ceil(face.scale)))
    crop = Image.fromarray(matched).resize((work, work), Image.Resampling.BICUBIC)
    per_pixel = face.to_unit * work  # photo -> work-crop pixel
    shift = per_pixel[:, :2] @ np.array([region.left, region.top]) + per_pixel[:, 2]
    data = (*per_pixel[0, :2], shift[0], *per_pixel[1, :2], shift[1])
    warped = np.asarray(crop.transform((region.width, region.height), Image.Transform.AFFINE, data,
                                       Image.Resampling.BICUBIC), dtype=np.float32)
    window = image[region.top:region.bottom, region.left:region.right]
    original = window.astype(np.float32)
    mixed = original + weight[..., None] * (warped - original)
    # Where the weight is 0 the mix is the original's own integer value, so rounding keeps it exact.
    window[...] = np.clip(mixed.round(), 0, 255).astype(np.uint8)
    return BlendedFace(region, weight)
