"""Paired bootstrap intervals on a gap between two models scored on the same examples."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import InvalidArgument
from veil.unlearning.evaluation import auc
from veil.unlearning.intervals import paired_bootstrap


def test_two_models_with_the_same_outcomes_differ_by_exactly_zero():
    hits = np.random.default_rng(0).random(200) < 0.4
    assert paired_bootstrap(np.mean, [hits], [hits.copy()]) == (0.0, 0.0)


def test_pairing_gives_the_interval_of_the_difference_not_of_two_separate_rates():
    # 1000 examples, the reference right on 500 of them; ours wrong on 100 of those: the gap is
    # -0.1, and its paired standard error sqrt(0.1 * 0.9 / 1000) = 0.0095, where two separate
    # rates near 0.45 would give sqrt(2 * 0.25 / 1000) = 0.022.
    theirs = np.zeros(1000, dtype=bool)
    theirs[:500] = True
    ours = theirs.copy()
    ours[:100] = False
    low, high = paired_bootstrap(np.mean, [ours], [theirs], seed=3)
    assert low < -0.1 < high
    assert 0.03 < high - low < 0.045  # 2 x 1.96 x 0.0095 = 0.037
    assert paired_bootstrap(np.mean, [ours], [theirs], seed=3) == (low, high)


def test_groups_are_resampled_each_on_its_own():
    # A separator that is perfect on every resample keeps AUC 1 only if no resample loses a group.
    members, others = np.arange(5, 10, dtype=float), np.arange(5, dtype=float)
    assert paired_bootstrap(auc, [members, others], [np.zeros(5), np.zeros(5)]) == (0.5, 0.5)


@pytest.mark.parametrize("ours, theirs, kwargs, message", [
    ([], [], {}, "same groups"),
    ([np.ones(3)], [np.ones(3), np.ones(3)], {}, "same groups"),
    ([np.ones(3)], [np.ones(4)], {}, r"\[3\] against \[4\]"),
    ([np.ones(0)], [np.ones(0)], {}, "non-zero"),
    ([np.ones(3)], [np.ones(3)], {"level": 1.0}, "level in \\(0, 1\\)"),
    ([np.ones(3)], [np.ones(3)], {"draws": 0}, "draws >= 1"),
])
def test_a_malformed_request_is_refused(ours, theirs, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        paired_bootstrap(np.mean, ours, theirs, **kwargs)
