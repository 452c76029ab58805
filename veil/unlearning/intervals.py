"""Paired bootstrap intervals on the difference of one measure between two models scored on the
same examples (an update against retraining, on the same held-out images and originals).

Scoring both models on one resample of the examples keeps the pairing, so the interval is that of
the difference itself, narrower than two separate intervals would suggest (Efron & Tibshirani, "An
Introduction to the Bootstrap", 1993, ch. 13). Groups of examples (the originals and the test split
of a membership AUC) are resampled each on its own, keeping their sizes. The interval covers the
sampling of the examples only: the data, training and mechanism draws of one seed stay fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from veil.errors import InvalidArgument

DRAWS = 2000
LEVEL = 0.95


def paired_bootstrap(statistic: Callable[..., float], ours: Sequence[np.ndarray],
                     theirs: Sequence[np.ndarray], *, draws: int = DRAWS, level: float = LEVEL,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of statistic(*ours) - statistic(*theirs): `ours[k]` and `theirs[k]` are
    the two models' per-example outcomes on the same examples of group k."""
    if not ours or len(ours) != len(theirs):
        raise InvalidArgument("give both models' outcomes for the same groups of examples")
    sizes = [len(a) for a in ours]
    if any(size == 0 or size != len(b) for size, b in zip(sizes, theirs)):
        raise InvalidArgument(f"each group needs the same, non-zero number of examples for both models: "
                              f"{sizes} against {[len(b) for b in theirs]}")
    if draws < 1 or not 0 < level < 1:
        raise InvalidArgument(f"a bootstrap needs draws >= 1 and a level in (0, 1), not {draws} and {level}")
    rng = np.random.default_rng(seed)
    gaps = np.empty(draws)
    for d in range(draws):
        picks = [rng.integers(0, size, size) for size in sizes]
        gaps[d] = (statistic(*(a[i] for a, i in zip(ours, picks)))
                   - statistic(*(b[i] for b, i in zip(theirs, picks))))
    tail = (1 - level) / 2
    low, high = np.quantile(gaps, [tail, 1 - tail])
    return float(low), float(high)
