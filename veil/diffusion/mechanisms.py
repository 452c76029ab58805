"""The DP mechanisms of Diffusion-DP (DESIGN section 4), on torch tensors with explicit generators.

The release functions of veil.privacy.mechanisms' registry live here (each entry names its
function; the anonymizer calls it through the entry):
* `release_randomized_response` / `release_laplace`: a protected attribute from the attribute
  classifier's logits, on the entry's bounds (the decoder's attribute scale [-1, 1]).
* `gaussian_identity_release`: the identity latent.

The mechanisms themselves:

* `randomized_response`: a binary attribute keeps its class with probability e^eps / (1 + e^eps);
  eps-local-DP for the released value.
* `laplace_release`: a continuous intensity in [lo, hi] gets Laplace noise of scale (hi - lo) / eps
  and is clipped back; eps-DP for the released value.
* `gaussian_identity_release`: the identity latent is clipped to norm C, gets N(0, sigma^2 I) with
  sigma calibrated for (eps, delta) under replace-one by dp-accounting's PLD accountant, and is
  rescaled to the decoder's latent norm (post-processing).
* `resample_start`: re-draws a fraction rho of the inverted start x_T with fresh noise.

Every random draw comes from the generator passed in, so a seed reproduces a release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from veil.errors import InvalidArgument
from veil.ledger import calibrate_gaussian_noise_multiplier
from veil.privacy import MechanismSpec, require_epsilon
from veil.privacy.mechanisms import laplace_noise_scale


def keep_probability(epsilon: float) -> float:
    """P(randomized response releases the true class) = e^eps / (1 + e^eps)."""
    return 1.0 / (1.0 + math.exp(-epsilon))


def randomized_response(values: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """Release +-1 values: each kept with probability e^eps / (1 + e^eps), else flipped."""
    epsilon = require_epsilon(epsilon, "randomized_response")
    if not torch.all((values == 1) | (values == -1)):
        raise InvalidArgument("randomized_response needs binary values of +1 / -1")
    keep = torch.rand(values.shape, generator=generator, device=generator.device) < keep_probability(epsilon)
    return torch.where(keep.to(values.device), values, -values)


def laplace_release(scores: torch.Tensor, epsilon: float, low: float, high: float,
                    generator: torch.Generator) -> torch.Tensor:
    """s' = clip(clip(s, lo, hi) + Laplace(0, (hi - lo) / eps), lo, hi)."""
    epsilon = require_epsilon(epsilon, "laplace")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InvalidArgument(f"laplace needs finite bounds lo < hi, got [{low}, {high}]")
    scale = laplace_noise_scale(epsilon, (low, high))
    u = torch.rand(scores.shape, generator=generator, device=generator.device).to(scores.device) - 0.5
    noise = -scale * torch.sign(u) * torch.log1p(-2 * u.abs())
    return (scores.clamp(low, high) + noise).clamp(low, high)


def release_randomized_response(logits: torch.Tensor, epsilon: float, spec: MechanismSpec,
                                generator: torch.Generator) -> torch.Tensor:
    """The predicted class (+-1, the spec's bounds) through randomized response."""
    low, high = spec.bounds
    return randomized_response(torch.where(logits >= 0, high, low), epsilon, generator)


def release_laplace(logits: torch.Tensor, epsilon: float, spec: MechanismSpec,
                    generator: torch.Generator) -> torch.Tensor:
    """The class probability as an intensity 2 P(+1) - 1 in [-1, 1], through the Laplace mechanism."""
    low, high = spec.bounds
    return laplace_release(torch.tanh(logits / 2), epsilon, low, high, generator)


@dataclass(frozen=True)
class GaussianCalibration:
    epsilon: float
    delta: float
    clip_norm: float
    noise_multiplier: float

    @property
    def sigma(self) -> float:
        # Under replace-one, dp-accounting's Gaussian of noise multiplier m on records of norm
        # <= C is the mechanism with noise sigma = m * C (L2 sensitivity 2C is accounted inside).
        return self.noise_multiplier * self.clip_norm


def calibrate_identity(epsilon: float, delta: float, clip_norm: float) -> GaussianCalibration:
    epsilon = require_epsilon(epsilon, "identity")
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise InvalidArgument(f"identity clip norm must be finite and > 0, got {clip_norm}")
    return GaussianCalibration(epsilon, delta, clip_norm, calibrate_gaussian_noise_multiplier(epsilon, delta))


def gaussian_identity_release(latents: torch.Tensor, calibration: GaussianCalibration, target_norm: float,
                              generator: torch.Generator) -> torch.Tensor:
    """Clip each row to norm C, add N(0, sigma^2 I), rescale to `target_norm`."""
    norms = latents.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    clipped = latents * torch.clamp(calibration.clip_norm / norms, max=1.0)
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents.device)
    noisy = clipped + calibration.sigma * noise
    return noisy * (target_norm / noisy.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def resample_start(x_start: torch.Tensor, rho: float, generator: torch.Generator) -> torch.Tensor:
    """x' = sqrt(1 - rho) x + sqrt(rho) n: re-draws a fraction rho of x_T's variance."""
    if not 0.0 <= rho <= 1.0 or math.isnan(rho):
        raise InvalidArgument(f"rho must be in [0, 1], got {rho}")
    if rho == 0.0:
        return x_start
    noise = torch.randn(x_start.shape, generator=generator, device=generator.device).to(x_start.device)
    return math.sqrt(1.0 - rho) * x_start + math.sqrt(rho) * noise
