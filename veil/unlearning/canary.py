"""Canaries: a pattern planted in some training originals and tied to a label, so that a model
trained on them carries something measurable that a model which never saw them does not
(Warnecke et al., NDSS 2023, section 6; Carlini et al., "The Secret Sharer", USENIX Security 2019).

A canary is a small patch of seeded random colours stamped into the bottom-right corner of an
image whose label of `attribute` is set to `label` (a label flip where it differed). Two measures:
- success: stamp the patch on held-out images whose true value of `attribute` is not `label`; the
  fraction the model then predicts as `label`. A model that never saw the canary scores about its
  error rate on those images. Its effect is success minus the same rate without the patch.
- exposure (secret sharer): the loss of `label` on held-out images stamped with the canary patch,
  ranked among the same loss for `candidates` other patches drawn alike; exposure =
  log2(candidates + 1) - log2(rank). A model that never saw the canary ranks it anywhere
  (expected exposure about 1 bit); a model that learnt it ranks it first (the maximum).
"""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from veil.errors import InvalidArgument
from veil.unlearning.classifier import images_to_tensor
from veil.unlearning.manifest import Canary
from veil.unlearning.training import batched

# Exposure's candidate patches are drawn from seeds after the canary's own.
EXPOSURE_CANDIDATES = 63
# Held-out images the exposure ranking stamps each candidate on (it runs candidates + 1 passes).
EXPOSURE_IMAGES = 64


def canary_pattern(canary: Canary) -> np.ndarray:
    return patch_pattern(canary.size, canary.seed)


def patch_pattern(size: int, seed: int) -> np.ndarray:
    """uint8 (size, size, 3): each pixel fully on or off per channel, so the patch is high-contrast."""
    return (np.random.default_rng([seed, 11]).integers(0, 2, (size, size, 3)) * 255).astype(np.uint8)


def stamp(images: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """A copy of uint8 (N, H, W, 3) `images` with `pattern` in the bottom-right corner."""
    size = pattern.shape[0]
    if images.shape[1] < size or images.shape[2] < size:
        raise InvalidArgument(f"a {size}px canary does not fit {images.shape[2]}x{images.shape[1]} images")
    out = images.copy()
    out[:, -size:, -size:, :] = pattern
    return out


def stamp_tensor(images: torch.Tensor, pattern: np.ndarray) -> torch.Tensor:
    """`stamp` on classifier tensors (N, 3, H, W) as images_to_tensor makes them."""
    size = pattern.shape[0]
    out = images.clone()
    out[:, :, -size:, -size:] = images_to_tensor(pattern[None])[0]
    return out


def _label_loss(model: nn.Module, images: torch.Tensor, column: int, label: int) -> torch.Tensor:
    logits = batched(model, images)[:, column]
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(label)),
                                              reduction="none")


def eligible(canary: Canary, column: int, test_images: torch.Tensor,
             test_targets: torch.Tensor) -> torch.Tensor:
    """Held-out images whose true value of the canary's attribute is not its label."""
    chosen = test_images[(test_targets[:, column] > 0.5) != bool(canary.label)]
    if chosen.shape[0] == 0:
        raise InvalidArgument(f"no held-out image has {canary.attribute} != {canary.label}: the "
                              "canary cannot be measured")
    return chosen


def _label_hits(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> np.ndarray:
    """Per image of `images`, whether the model predicts the canary's label."""
    logits = batched(model, images)[:, column]
    return ((logits > 0) == bool(canary.label)).numpy()


def _label_rate(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> float:
    """Fraction of `images` the model predicts as the canary's label."""
    return float(_label_hits(model, canary, column, images).mean())


def canary_hits(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> np.ndarray:
    """Per image of `images` (from `eligible`), whether it is predicted as the canary's label once
    stamped: the outcomes `canary_success` averages."""
    return _label_hits(model, canary, column, stamp_tensor(images, canary_pattern(canary)))


def canary_success(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> float:
    """Fraction of `images` (from `eligible`) predicted as the canary's label once stamped."""
    return float(canary_hits(model, canary, column, images).mean())


def canary_effect(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> float:
    """Success minus the rate of the label on the same images without the patch: what the patch
    itself adds. An update that moves every prediction toward the label (as fitting replacements
    that keep a planted label does) raises success without learning the patch; this does not move."""
    return canary_success(model, canary, column, images) - _label_rate(model, canary, column, images)


def exposure(model: nn.Module, canary: Canary, column: int, images: torch.Tensor,
             candidates: int = EXPOSURE_CANDIDATES) -> float:
    """Secret-sharer exposure of the canary among `candidates` other patches (module docstring)."""
    images = images[:EXPOSURE_IMAGES]
    seeds = [canary.seed, *range(canary.seed + 1, canary.seed + 1 + candidates)]
    losses = np.array([float(_label_loss(model, stamp_tensor(images, patch_pattern(canary.size, s)),
                                         column, canary.label).mean()) for s in seeds])
    rank = rankdata(losses)[0]
    return math.log2(len(seeds)) - math.log2(rank)


def canary_metrics(model: nn.Module, canary: Canary, column: int, images: torch.Tensor) -> dict[str, float]:
    success = canary_success(model, canary, column, images)
    return {"canary_success": success,
            "canary_effect": success - _label_rate(model, canary, column, images),
            "canary_exposure": exposure(model, canary, column, images)}
