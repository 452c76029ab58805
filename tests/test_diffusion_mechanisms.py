"""The DP mechanisms' statistics and their input checks."""

from __future__ import annotations

import math

import pytest
import torch

from veil.diffusion.mechanisms import (calibrate_identity, gaussian_identity_release, keep_probability,
                                       laplace_release, randomized_response, resample_start)
from veil.errors import InvalidArgument
from veil.privacy import LEVELS, PrivacySettings, privacy_level

NAMES = ["Male", "Young", "Smiling", "No_Beard"]
BAD_EPS = [0.0, -1.0, math.nan, math.inf]


@pytest.mark.parametrize("eps", [0.5, 1.0, 4.0])
def test_randomized_response_flip_rate_is_within_a_binomial_interval(eps: float) -> None:
    n = 40_000
    values = torch.where(torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.4, 1.0, -1.0)
    released = randomized_response(values, eps, torch.Generator().manual_seed(2))
    flips = (released != values).double().mean().item()
    p = 1 / (1 + math.exp(eps))
    half_width = 4.5 * math.sqrt(p * (1 - p) / n)  # a false alarm rate of ~1e-5
    assert abs(flips - p) < half_width, (flips, p)
    assert set(released.unique().tolist()) <= {-1.0, 1.0}
    assert keep_probability(eps) == pytest.approx(1 - p)


def test_laplace_has_the_calibrated_scale_and_stays_in_bounds() -> None:
    gen = torch.Generator().manual_seed(3)
    # eps within MAX_EPSILON, bounds wide enough (10 scales) that clipping is negligible (e^-10)
    wide = laplace_release(torch.zeros(50_000), epsilon=20.0, low=-10.0, high=10.0, generator=gen)
    # scale b = (hi - lo) / eps = 1: E|X| = b, Var X = 2 b^2
    assert wide.abs().mean().item() == pytest.approx(1.0, abs=0.03)
    assert wide.var().item() == pytest.approx(2.0, rel=0.06)
    narrow = laplace_release(torch.full((1000,), 5.0), epsilon=0.5, low=-1.0, high=1.0, generator=gen)
    assert narrow.min() >= -1 and narrow.max() <= 1


def test_gaussian_identity_is_calibrated_by_the_pld_accountant_and_renormalised() -> None:
    from dp_accounting import dp_event
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    from dp_accounting.privacy_accountant import NeighboringRelation

    cal = calibrate_identity(epsilon=4.0, delta=1e-5, clip_norm=8.0)
    accountant = PLDAccountant(NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_event.GaussianDpEvent(cal.noise_multiplier))
    assert accountant.get_epsilon(1e-5) == pytest.approx(4.0, abs=0.01)
    assert cal.sigma == pytest.approx(cal.noise_multiplier * 8.0)
    # Its own seed: drawn from the global generator, z could equal the noise stream below.
    z = torch.randn(256, 64, generator=torch.Generator().manual_seed(12345))
    z = 8.0 * z / z.norm(dim=1, keepdim=True)
    out = gaussian_identity_release(z, cal, target_norm=8.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.norm(dim=1), torch.full((256,), 8.0))
    strong = calibrate_identity(epsilon=64.0, delta=1e-5, clip_norm=8.0)
    kept = gaussian_identity_release(z, strong, 8.0, torch.Generator().manual_seed(0))
    # The released latent keeps about C / sqrt(C^2 + d sigma^2) of the original direction.
    for calibration, released in ((cal, out), (strong, kept)):
        expected = 8.0 / math.sqrt(64.0 + 64 * calibration.sigma**2)
        cos = torch.nn.functional.cosine_similarity(z, released).mean().item()
        assert cos == pytest.approx(expected, abs=0.06)


def test_resample_start() -> None:
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(12345))
    gen = torch.Generator().manual_seed(0)
    assert resample_start(x, 0.0, gen) is x
    out = resample_start(x, 1.0, gen)
    assert torch.corrcoef(torch.stack([x.flatten(), out.flatten()]))[0, 1].abs() < 0.15
    with pytest.raises(InvalidArgument, match="rho"):
        resample_start(x, 1.5, gen)


@pytest.mark.parametrize("eps", BAD_EPS)
def test_invalid_epsilon_is_refused_everywhere(eps: float) -> None:
    gen = torch.Generator()
    with pytest.raises(InvalidArgument, match="epsilon must be"):
        randomized_response(torch.ones(3), eps, gen)
    with pytest.raises(InvalidArgument, match="epsilon must be"):
        laplace_release(torch.zeros(3), eps, -1, 1, gen)
    with pytest.raises(InvalidArgument, match="epsilon must be"):
        calibrate_identity(eps, 1e-5, 1.0)
    with pytest.raises(InvalidArgument, match="Male: epsilon must be"):
        PrivacySettings.explicit(["Male"], NAMES, {"Male": eps})
    with pytest.raises(InvalidArgument, match="identity: epsilon must be"):
        PrivacySettings.explicit([], NAMES, {}, identity_epsilon=eps)


def test_budget_checks() -> None:
    with pytest.raises(InvalidArgument, match="unknown attribute.*'Mail'.*Male"):
        PrivacySettings.from_level(3, ["Mail"], NAMES)
    with pytest.raises(InvalidArgument, match="privacy level must be an integer in 0..10"):
        PrivacySettings.from_level(11, [], NAMES)
    with pytest.raises(InvalidArgument, match="no epsilon given for protected attribute.*Young"):
        PrivacySettings.explicit(["Male", "Young"], NAMES, {"Male": 1.0})
    with pytest.raises(InvalidArgument, match="not protected: Smiling"):
        PrivacySettings.explicit(["Male"], NAMES, {"Male": 1.0, "Smiling": 1.0})
    with pytest.raises(InvalidArgument, match="gaussian is for identity"):
        PrivacySettings.explicit(["Male"], NAMES, {"Male": 1.0}, mechanism="gaussian")
    with pytest.raises(InvalidArgument, match="listed twice"):
        PrivacySettings.from_level(2, ["Male", "Male"], NAMES)


def test_level_table_is_monotone() -> None:
    assert privacy_level(0).attribute_epsilon is None and privacy_level(0).identity_epsilon is None
    attr = [lvl.attribute_epsilon for lvl in LEVELS[1:]]
    assert attr == sorted(attr, reverse=True)
    ident = [lvl.identity_epsilon for lvl in LEVELS if lvl.identity_epsilon is not None]
    assert ident == sorted(ident, reverse=True)
    rho = [lvl.rho for lvl in LEVELS]
    assert rho == sorted(rho)
