"""The leakage audit: its statistics on attackers with known outputs, its probe split, and the
kept/flipped decoding it relies on (tiny model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.audit import (AuditConfig, Outcomes, decode_outcomes, expected_over_releases, settings, split_probes,
                                  upper_bar_row)
from veil.diffusion.leakage import (Interval, PosteriorTable, auc, bayes_ceiling, bootstrap_mean, detector_ceiling,
                                    expected_correct, wilson_interval)
from veil.diffusion.mechanisms import keep_probability
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.diffusion.verify import EditVerifier
from veil.errors import InvalidArgument
from veil.privacy import PrivacySettings


def test_expected_accuracy_weighs_both_outcomes_by_the_mechanism() -> None:
    # An attacker that reads the released value is right on every kept decode and wrong on every
    # flipped one: expected over the coin it sits exactly on the randomized-response bound.
    n = 50
    reads_release = expected_correct(np.ones(n), np.zeros(n), keep_probability(1.0))
    assert reads_release.mean() == pytest.approx(0.7310585786)
    assert expected_correct(np.ones(n), np.zeros(n), keep_probability(0.5)).mean() == pytest.approx(0.6224593312)
    # One that sees through the edit (right on both) scores 1 whatever the eps; a leak cannot hide.
    assert expected_correct(np.ones(n), np.ones(n), keep_probability(0.5)).mean() == 1.0
    # Mixed: probe-wise weights, not a pooled coin.
    mixed = expected_correct(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), 0.75)
    assert mixed.tolist() == [1.0, 0.75, 0.25, 0.0]


def test_intervals_cover_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    p, n, trials = 0.7, 200, 400
    wilson_hits = bootstrap_hits = 0
    for t in range(trials):
        draws = rng.random(n) < p
        w = wilson_interval(int(draws.sum()), n)
        wilson_hits += w.low <= p <= w.high
        if t < 100:
            b = bootstrap_mean(draws.astype(float), resamples=500, seed=t)
            bootstrap_hits += b.low <= p <= b.high
    assert 0.92 <= wilson_hits / trials <= 0.98
    assert 0.88 <= bootstrap_hits / 100 <= 1.0
    assert wilson_interval(0, 0).value != wilson_interval(0, 0).value  # NaN: no trials, no claim
    assert wilson_interval(100, 100).low < 1.0  # all right still leaves room below


def test_auc_counts_ties_half() -> None:
    assert auc(np.array([2.0, 3.0]), np.array([1.0, 0.0])) == 1.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0


def test_ceiling_from_released_value_and_unchanged_attributes() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    key = np.where(rng.random(n) < 0.5, 1, -1)
    noise = np.where(rng.random((n, 2)) < 0.5, 1, -1)
    keep = keep_probability(1.0)
    # Unchanged attributes independent of the key: only the released value helps -> the bound.
    independent = PosteriorTable(key, noise)
    assert bayes_ceiling(independent, key, noise, keep).mean() == pytest.approx(keep, abs=0.01)
    assert detector_ceiling(independent, key, noise).value == pytest.approx(0.5, abs=0.03)
    # An unchanged attribute equal to the key gives it away whatever the mechanism does.
    revealing = np.stack([key, noise[:, 0]], axis=1)
    table = PosteriorTable(key, revealing)
    assert bayes_ceiling(table, key, revealing, keep_probability(0.1)).mean() == pytest.approx(1.0, abs=1e-9)
    assert detector_ceiling(table, key, revealing).value > 0.99
    # A skewed prior beats a weak release: the rule answers the majority (0.8), not the coin (0.52).
    skewed = np.where(rng.random(n) < 0.8, 1, -1)
    table = PosteriorTable(skewed, noise)
    assert bayes_ceiling(table, skewed, noise, keep_probability(0.1)).mean() == pytest.approx(0.8, abs=0.02)


def test_probe_split_keeps_tuning_and_test_identities_apart(tiny_faces: Path) -> None:
    data = load_celeba(tiny_faces, size=16)  # 12 identities
    tuning, test = split_probes(data, 5, 6, seed=0)
    assert len(tuning) == 5 and len(test) == 6
    assert len(set(tuning.identities)) == 5 and len(set(test.identities)) == 6
    assert not set(tuning.identities) & set(test.identities)
    other_tuning, _ = split_probes(data, 5, 6, seed=1)
    assert set(other_tuning.identities) != set(tuning.identities)  # the probe seed draws other probes
    with pytest.raises(InvalidArgument, match="unseen identities"):
        split_probes(data, 6, 7, seed=0)
    with pytest.raises(InvalidArgument, match="different seeds"):
        from veil.diffusion.audit import LeakageAudit

        LeakageAudit(None, None, data, data, AuditConfig(tuning_seed=2, test_seeds=(2,)))  # type: ignore[arg-type]


def test_every_level_that_protects_is_a_setting() -> None:
    names = ["Male", "Young"]
    found = settings(AuditConfig(epsilons=(0.5, 1.0)), names)
    assert [(s.name, s.epsilon) for s in found[:2]] == [("attribute-only", 0.5), ("attribute-only", 1.0)]
    assert [s.name for s in found[2:]] == [f"level {n}" for n in range(1, 11)]
    # Levels 1, 2 decode like the attribute-only release; 5..10 all re-draw x_T fully.
    assert found[2].decoding == found[0].decoding == (None, 0.0)
    assert {s.decoding[1] for s in found if s.name in ("level 5", "level 10")} == {1.0}
    with pytest.raises(InvalidArgument, match="nothing to audit"):
        settings(AuditConfig(levels=(0,)), names)


def test_kept_and_flipped_plans_differ_only_in_the_released_value(tiny_model_dir: Path, tiny_faces: Path) -> None:
    anonymizer = Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir), max_batch=4)
    names = anonymizer.model.attribute_names
    faces = list(load_celeba(tiny_faces, size=16).images[:3])
    prepared = anonymizer.prepare(faces)
    budget = PrivacySettings.from_level(5, ["Male"], names)  # identity noise and a full re-draw of x_T
    j = names.index("Male")
    value = prepared.predicted[:, j]
    kept = anonymizer.plan(prepared, budget, 1, seed=3, outcome={"Male": value})
    flipped = anonymizer.plan(prepared, budget, 1, seed=3, outcome={"Male": -value})
    assert torch.equal(kept.released[:, j], value) and torch.equal(flipped.released[:, j], -value)
    assert torch.equal(kept.z, flipped.z) and torch.equal(kept.x_start, flipped.x_start)
    others = [i for i, a in enumerate(names) if a not in ("Male", *anonymizer.model.card.implied.get("Male", []))]
    assert torch.equal(kept.released[:, others], flipped.released[:, others])
    with pytest.raises(InvalidArgument, match="does not release"):
        anonymizer.plan(prepared, budget, 1, seed=3, outcome={"Young": value})
    outcomes = decode_outcomes(anonymizer, prepared, budget, "Male", seeds=[3, 4])
    assert outcomes.kept.shape == outcomes.flipped.shape == (2, 3, 16, 16, 3)
    assert not np.array_equal(outcomes.kept[0], outcomes.kept[1])  # each seed is its own draw
    assert outcomes.kept_offered.all() and outcomes.flipped_offered.all()  # unverified: all released


def test_verified_outcomes_are_what_the_verifier_offers(tiny_model_dir: Path, tiny_faces: Path) -> None:
    anonymizer = Anonymizer(DiffusionAutoencoder.from_pretrained(tiny_model_dir), max_batch=8)
    names = anonymizer.model.attribute_names
    prepared = anonymizer.prepare(list(load_celeba(tiny_faces, size=16).images[:6]))
    budget = PrivacySettings.explicit(["Male"], names, {"Male": 1.0})
    verifier = EditVerifier(anonymizer, max_tries=2)
    outcomes = decode_outcomes(anonymizer, prepared, budget, "Male", [3], verifier)
    value = prepared.predicted[:, names.index("Male")]
    for name, v in (("kept", value), ("flipped", -value)):
        plan = anonymizer.plan(prepared, budget, 1, seed=3, outcome={"Male": v})
        verified = [row[0] for row in verifier.verify(plan, anonymizer.decode([plan])[0])]
        assert getattr(outcomes, f"{name}_offered")[0].tolist() == [c.offered for c in verified]
        for i, c in enumerate(verified):
            if c.offered:
                assert np.array_equal(getattr(outcomes, name)[0, i], c.image.image)


def test_refused_outcomes_weigh_nothing_and_the_rest_is_renormalised() -> None:
    right_kept = np.array([[1, 1, 0, 1]], dtype=float)  # one draw, four probes
    right_flipped = np.array([[0, 1, 1, 0]], dtype=float)
    every = Outcomes(np.zeros((1, 4)), np.zeros((1, 4)), np.ones((1, 4), bool), np.ones((1, 4), bool))
    # Nothing refused: the mechanism's weights, as expected_correct has them.
    values, released = expected_over_releases(right_kept, right_flipped, every.weights(0.75))
    assert released.all() and values.tolist() == expected_correct(right_kept[0], right_flipped[0], 0.75).tolist()
    # Probe 0's flip refused: only its kept decode is released; probe 2's kept refused: only the
    # flip; probe 3 releases nothing and counts for nothing.
    some = Outcomes(every.kept, every.flipped, np.array([[True, True, False, False]]),
                    np.array([[False, True, True, False]]))
    values, released = expected_over_releases(right_kept, right_flipped, some.weights(0.75))
    assert released.tolist() == [True, True, True, False] and values.tolist() == [1.0, 1.0, 1.0]
    # Per attribute (D, N, A) the same weights apply to every column.
    both, _ = expected_over_releases(np.stack([right_kept, 1 - right_kept], -1),
                                     np.stack([right_flipped, 1 - right_flipped], -1), some.weights(0.75))
    assert both[:, 0].tolist() == [1.0, 1.0, 1.0] and both[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_adaptive_bar_holds_the_stronger_attacker() -> None:
    # A weakly trained adaptive attacker under the bar must not pass a release the clean one breaks.
    weak, strong = Interval(0.40, 0.20, 0.60), Interval(0.76, 0.73, 0.80)
    assert upper_bar_row("a", weak, 0.75, "").passed is True
    assert upper_bar_row("a", weak, 0.75, "", judged=max(weak, strong, key=lambda i: i.high)).passed is False
    assert upper_bar_row("a", strong, 0.80, "").passed is True  # judged on the upper end, 0.80 <= 0.80
