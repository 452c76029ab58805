"""Faces too small to re-synthesize: pixelated with noise inside their box, never left as they were."""

from __future__ import annotations

import numpy as np

from veil.faces.detect import Box

BLOCKS = 4
"""Blocks across the box: too few to keep an identity, enough to still read as a face-sized patch."""
NOISE_STD = 24.0
"""Noise on each block's colour (and, at a quarter of it, on each pixel), so the blocks' means,
which a small face's identity could partly survive in, are not released as they were."""


def obscure_face(image: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    """Pixelate `box` of `image` in place into about BLOCKS x BLOCKS noisy blocks."""
    window = image[box.top:box.bottom, box.left:box.right]
    height, width = window.shape[:2]
    if height == 0 or width == 0:
        return
    rows = np.minimum(np.arange(height) * BLOCKS // height, BLOCKS - 1)
    cols = np.minimum(np.arange(width) * BLOCKS // width, BLOCKS - 1)
    pixels = window.astype(np.float32)
    means = np.zeros((BLOCKS, BLOCKS, 3), dtype=np.float32)
    for r in range(BLOCKS):
        for c in range(BLOCKS):
            cell = pixels[rows == r][:, cols == c]
            if cell.size:
                means[r, c] = cell.reshape(-1, 3).mean(axis=0)
    means += rng.normal(0.0, NOISE_STD, means.shape)
    out = means[rows][:, cols] + rng.normal(0.0, NOISE_STD / 4, pixels.shape)
    window[...] = np.clip(out.round(), 0, 255).astype(np.uint8)
