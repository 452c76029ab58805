"""The statistics of the leakage audit (DESIGN section 7), on plain numpy arrays.

* `expected_correct`: an attacker's correctness expected over the mechanism's coin: each probe is
  decoded with the protected value kept and flipped, and the two verdicts are weighted by the
  mechanism's probabilities (never one coin draw, which can land under a bound by chance).
* `bayes_ceiling`: what the release allows at best: the Bayes rule that predicts the original
  value from the released value and the attributes released unchanged, its posterior estimated
  on training labels; scored on the probes, expected over the coin like the attackers.
* 95% intervals: Wilson for counts, a percentile bootstrap over probes for means and AUCs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def wilson_interval(successes: int, total: int) -> Interval:
    """The 95% Wilson score interval of a proportion; NaN for no trials."""
    if total == 0:
        return Interval(math.nan, math.nan, math.nan)
    p = successes / total
    centre = (p + Z95**2 / (2 * total)) / (1 + Z95**2 / total)
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / (1 + Z95**2 / total)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean of per-probe values with a 95% percentile bootstrap interval over probes."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Interval(float(values.mean()), float(low), float(high))


def expected_correct(correct_kept: np.ndarray, correct_flipped: np.ndarray, keep: float) -> np.ndarray:
    """Per probe: P(keep) * [right on the kept decode] + P(flip) * [right on the flipped decode]."""
    return keep * np.asarray(correct_kept, dtype=np.float64) + (1 - keep) * np.asarray(correct_flipped, dtype=np.float64)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    neg = np.sort(np.asarray(negative, dtype=np.float64))
    pos = np.asarray(positive, dtype=np.float64)
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(pos) * len(neg)))


def paired_auc(positive: np.ndarray, negative: np.ndarray, resamples: int = 1000, seed: int = 0) -> Interval:
    """AUC of one probe's positive vs negative scores, bootstrapped over probes (pairs resampled together)."""
    rng = np.random.default_rng(seed)
    draws = [auc(positive[i], negative[i]) for i in rng.integers(0, len(positive), (resamples, len(positive)))]
    low, high = np.quantile(draws, [0.025, 0.975])
    return Interval(auc(positive, negative), float(low), float(high))


class PosteriorTable:
    """P(key = +1 | attributes released unchanged), counted on training labels.

    Cells are the joint values of the unchanged attributes; each cell's count gets one pseudo
    observation of the overall rate, so a cell seen once does not claim certainty.
    """

    def __init__(self, key: np.ndarray, unchanged: np.ndarray) -> None:
        cells = _cells(unchanged)
        positive = np.asarray(key) > 0
        self.prior = float(positive.mean())
        self.rates: dict[int, float] = {}
        for cell in np.unique(cells):
            rows = cells == cell
            self.rates[int(cell)] = float((positive[rows].sum() + self.prior) / (rows.sum() + 1))

    def p_plus(self, unchanged: np.ndarray) -> np.ndarray:
        return np.array([self.rates.get(int(c), self.prior) for c in _cells(unchanged)])


def _cells(unchanged: np.ndarray) -> np.ndarray:
    bits = (np.asarray(unchanged) > 0).astype(np.int64).reshape(len(unchanged), -1)
    return bits @ (1 << np.arange(bits.shape[1], dtype=np.int64))


def bayes_posterior_plus(prior_plus: np.ndarray, released: np.ndarray, keep: float) -> np.ndarray:
    """P(original = +1 | released value, unchanged attributes) under randomized response."""
    like_plus = np.where(np.asarray(released) > 0, keep, 1 - keep)
    plus = prior_plus * like_plus
    return plus / (plus + (1 - prior_plus) * (1 - like_plus))


def bayes_ceiling(table: PosteriorTable, key: np.ndarray, unchanged: np.ndarray, keep: float) -> np.ndarray:
    """Per probe: the Bayes rule's correctness expected over the coin (its ceiling accuracy)."""
    key = np.where(np.asarray(key) > 0, 1.0, -1.0)
    prior = table.p_plus(unchanged)
    right_if_kept = np.where(bayes_posterior_plus(prior, key, keep) >= 0.5, 1.0, -1.0) == key
    right_if_flipped = np.where(bayes_posterior_plus(prior, -key, keep) >= 0.5, 1.0, -1.0) == key
    return expected_correct(right_if_kept, right_if_flipped, keep)


def detector_ceiling(table: PosteriorTable, key: np.ndarray, unchanged: np.ndarray) -> Interval:
    """The best kept-vs-flipped AUC from the released value and unchanged attributes alone.

    With kept and flipped decodes in equal numbers, P(flipped | released r, u) grows with
    P(original = -r | u): the score of a decode showing r.
    """
    key = np.where(np.asarray(key) > 0, 1.0, -1.0)
    prior = table.p_plus(unchanged)

    def opposite(shown: np.ndarray) -> np.ndarray:  # P(original = -shown | u)
        return np.where(shown > 0, 1 - prior, prior)

    return paired_auc(opposite(-key), opposite(key))
