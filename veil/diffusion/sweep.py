"""The level sweep of `veil eval`: identity and utility at every privacy level with the key
attribute protected, one release of the probes per level, and a grid of example releases.

Each level is measured like the rows of `veil eval` (same probes, evaluators and galleries):
top-1 re-identification against the big and the small gallery (95% Wilson intervals), and the
accuracy of the clean attribute classifier on the attributes OUTSIDE the key attribute's protected
group (per attribute, and their per-probe mean with a 95% bootstrap interval over probes). A level
whose settings equal a release `veil eval` has already decoded (level 0's reconstruction) reuses
it rather than decoding the same images again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from veil.diffusion.leakage import bootstrap_mean, wilson_interval
from veil.privacy import PrivacySettings

# Level L is released with seed probe_seed + SWEEP_SEED_OFFSET + L: one draw per level, apart from
# the seeds of the rows' releases (probe_seed for level 0, probe_seed + 2 for the identity level).
SWEEP_SEED_OFFSET = 100
EXAMPLE_PROBES = 6
EXAMPLE_SCALE = 3  # nearest-neighbour upscaling: a 32 px face is too small to look at


@dataclass(frozen=True)
class Release:
    """Images of the probes already released under `settings` with `seed`."""

    settings: PrivacySettings
    seed: int
    images: np.ndarray  # uint8 (N, H, W, 3)


def sweep_seed(probe_seed: int, level: int) -> int:
    return probe_seed + SWEEP_SEED_OFFSET + level


def release_measures(reid_hits: np.ndarray, small_hits: np.ndarray, correct: np.ndarray,
                     utility_columns: Sequence[int], names: Sequence[str], seed: int) -> dict[str, Any]:
    """The JSON of one release: re-ID per gallery (Wilson) and the utility attributes' accuracy.

    `reid_hits`, `small_hits`: per probe, whether the gallery's top-1 is the probe's identity;
    `correct`: (N, A) whether the classifier reads each attribute as the original label.
    """
    columns = list(utility_columns)
    return {
        "reid": wilson_interval(int(np.sum(reid_hits)), len(reid_hits)).to_dict(),
        "reid_small": wilson_interval(int(np.sum(small_hits)), len(small_hits)).to_dict(),
        "utility": bootstrap_mean(correct[:, columns].mean(axis=1), seed=seed).to_dict(),
        "accuracy": {names[j]: float(correct[:, j].mean()) for j in columns},
    }


def sweep_levels(levels: Sequence[int], attribute: str, names: Sequence[str], probe_seed: int,
                 release: Callable[[PrivacySettings, int], np.ndarray],
                 measure: Callable[[np.ndarray], dict[str, Any]], originals: np.ndarray,
                 done: Sequence[Release], log: Callable[[str], None]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Every level of `levels` with `attribute` protected: its JSON entry, and the example grid
    (originals, then each level, of the first EXAMPLE_PROBES probes)."""
    entries: list[dict[str, Any]] = []
    columns = [originals[:EXAMPLE_PROBES]]
    for level in levels:
        settings = PrivacySettings.from_level(level, [attribute], names)
        prior = next((r for r in done if r.settings == settings), None)
        if prior is None:
            seed = sweep_seed(probe_seed, level)
            log(f"level sweep: level {level} ({attribute} protected, seed {seed})")
            images = release(settings, seed)
        else:
            seed, images = prior.seed, prior.images
        entries.append({"level": level, "attribute_epsilon": settings.attribute_epsilon.get(attribute),
                        "identity_epsilon": settings.identity_epsilon, "rho": settings.rho, "seed": seed,
                        "reused": prior is not None, **measure(images)})
        columns.append(images[:EXAMPLE_PROBES])
    return entries, example_grid(columns)


def example_grid(columns: Sequence[np.ndarray], scale: int = EXAMPLE_SCALE, gap: int = 2) -> np.ndarray:
    """One row per probe, one column per image stack (N, H, W, 3), upscaled nearest-neighbour,
    cells apart by `gap` white pixels (of the upscaled size)."""
    rows, size = columns[0].shape[0], columns[0].shape[1] * scale
    step = size + gap
    grid = np.full((rows * step - gap, len(columns) * step - gap, 3), 255, dtype=np.uint8)
    for c, stack in enumerate(columns):
        big = stack.repeat(scale, axis=1).repeat(scale, axis=2)
        for r in range(rows):
            grid[r * step:r * step + size, c * step:c * step + size] = big[r]
    return grid
