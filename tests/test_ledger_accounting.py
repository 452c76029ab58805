"""Ledger accounting against dp-accounting computed directly."""

import math

import pytest
from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution as pld
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation, UnsupportedEventError

from veil.errors import DataLoss, InvalidArgument
from veil.ledger import (
    AttributeSpend,
    IdentitySpend,
    LedgerConfig,
    LedgerEvent,
    ReleaseSpend,
    admissible_epsilon,
    calibrate_gaussian_noise_multiplier,
    compose,
    events_from_json,
    events_to_json,
)
from veil.privacy import MAX_EPSILON, Mechanism
from veil.privacy.mechanisms import randomized_response_noise_parameter

DELTA = 1e-6
GRID = 1e-3
BAD_EPS = [0.0, -1.0, math.nan, math.inf]


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0, 4.0, 8.0])
def test_randomized_response_noise_parameter_keeps_true_class_with_rr_probability(eps):
    p = randomized_response_noise_parameter(eps)
    # dp-accounting keeps the input with probability 1 - p + p/k, k = 2.
    assert 1 - p + p / 2 == pytest.approx(math.exp(eps) / (1 + math.exp(eps)), rel=1e-12)
    composed = compose([AttributeSpend("Male", Mechanism.RANDOMIZED_RESPONSE, eps).event()], DELTA)
    assert composed.composed_epsilon == pytest.approx(eps, abs=2 * GRID)


@pytest.mark.parametrize("eps", [0.25, 1.0, 3.0])
def test_single_laplace_and_gaussian_events_compose_to_their_epsilon(eps):
    laplace = AttributeSpend("Age", Mechanism.LAPLACE, eps).event()
    assert laplace.parameter == pytest.approx(2 / eps)
    assert compose([laplace], DELTA).composed_epsilon == pytest.approx(eps, abs=2 * GRID)
    nm = calibrate_gaussian_noise_multiplier(eps, DELTA)
    gaussian = IdentitySpend(eps, DELTA, nm).event()
    assert compose([gaussian], DELTA).composed_epsilon == pytest.approx(eps, abs=2 * GRID)


def test_mixed_sequence_matches_dp_accounting_computed_directly():
    spends = [
        ReleaseSpend("a", (AttributeSpend("Male", "randomized_response", 1.0),
                           AttributeSpend("Age", "laplace", 0.5)),
                     IdentitySpend(2.0, DELTA, calibrate_gaussian_noise_multiplier(2.0, DELTA))),
        ReleaseSpend("b", (AttributeSpend("Male", "randomized_response", 0.3),),
                     IdentitySpend(1.0, DELTA, calibrate_gaussian_noise_multiplier(1.0, DELTA))),
        ReleaseSpend("c", (AttributeSpend("Age", "laplace", 2.0),
                           AttributeSpend("Smiling", "randomized_response", 4.0))),
    ]
    events = [e for s in spends for e in s.events()]
    ours = compose(events, DELTA, GRID)

    # The same mechanisms composed by hand from dp-accounting's PLD constructors.
    expected = pld.identity(value_discretization_interval=GRID)
    for e in events:
        if e.mechanism is Mechanism.RANDOMIZED_RESPONSE:
            part = pld.from_randomized_response(
                e.parameter, 2, value_discretization_interval=GRID,
                neighboring_relation=NeighboringRelation.REPLACE_ONE)
        elif e.mechanism is Mechanism.LAPLACE:
            part = pld.from_laplace_mechanism(e.parameter, sensitivity=2,
                                              value_discretization_interval=GRID)
        else:
            part = pld.from_gaussian_mechanism(
                e.parameter, value_discretization_interval=GRID,
                neighboring_relation=NeighboringRelation.REPLACE_ONE)
        expected = expected.compose(part)
    assert ours.composed_epsilon == pytest.approx(expected.get_epsilon_for_delta(DELTA), rel=1e-9)

    # Without the Laplace events, dp-accounting's own PLDAccountant(REPLACE_ONE) agrees too.
    no_laplace = [e for e in events if e.mechanism is not Mechanism.LAPLACE]
    accountant = PLDAccountant(NeighboringRelation.REPLACE_ONE, value_discretization_interval=GRID)
    for e in no_laplace:
        accountant.compose(e.to_dp_event())
    assert compose(no_laplace, DELTA, GRID).composed_epsilon == pytest.approx(
        accountant.get_epsilon(DELTA), rel=1e-9)

    # Composition never exceeds the plain sum (up to the pessimistic grid rounding).
    assert ours.sum_epsilon == pytest.approx(1.0 + 0.5 + 2.0 + 0.3 + 1.0 + 2.0 + 4.0)
    assert ours.composed_epsilon <= ours.sum_epsilon + len(events) * GRID
    assert ours.composed_epsilon < ours.sum_epsilon - 0.5


def test_composition_of_many_releases_is_below_the_plain_sum():
    event = AttributeSpend("Male", "randomized_response", 1.0).event()
    result = compose([event] * 10, DELTA, GRID)
    assert result.sum_epsilon == pytest.approx(10.0)
    assert 1.0 < result.composed_epsilon < result.sum_epsilon


def test_dp_accounting_gaps_the_ledger_works_around():
    # 1. PLDAccountant refuses Laplace under REPLACE_ONE; our accountant composes it.
    with pytest.raises(UnsupportedEventError):
        PLDAccountant(NeighboringRelation.REPLACE_ONE).compose(dp_event.LaplaceDpEvent(2.0))
    # 2. compose(rr, count) ignores count, so the ledger composes events one at a time.
    rr = dp_event.RandomizedResponseDpEvent(randomized_response_noise_parameter(1.0), 2)
    counted = PLDAccountant(NeighboringRelation.REPLACE_ONE).compose(rr, 3).get_epsilon(DELTA)
    assert counted == pytest.approx(1.0, abs=1e-3)
    event = AttributeSpend("Male", "randomized_response", 1.0).event()
    assert compose([event] * 3, DELTA).composed_epsilon == pytest.approx(3.0, abs=1e-2)


@pytest.mark.parametrize("bad", BAD_EPS)
def test_bad_epsilon_is_invalid_argument_everywhere(bad):
    for mechanism in ("randomized_response", "laplace"):
        with pytest.raises(InvalidArgument, match="finite and > 0"):
            AttributeSpend("Male", mechanism, bad)
    with pytest.raises(InvalidArgument, match="finite and > 0"):
        IdentitySpend(bad, DELTA, 3.0)
    with pytest.raises(InvalidArgument):
        IdentitySpend(1.0, DELTA, bad)
    with pytest.raises(InvalidArgument):
        calibrate_gaussian_noise_multiplier(bad, DELTA)


def test_spend_validation_and_json_roundtrip():
    with pytest.raises(InvalidArgument, match="listed twice"):
        ReleaseSpend("r", (AttributeSpend("Male", "laplace", 1.0),
                           AttributeSpend("Male", "randomized_response", 1.0)))
    with pytest.raises(InvalidArgument, match="releases nothing"):
        ReleaseSpend("r")
    with pytest.raises(InvalidArgument, match="unknown mechanism"):
        AttributeSpend("Male", "exponential", 1.0)
    with pytest.raises(InvalidArgument, match="identity only"):
        AttributeSpend("Male", "gaussian", 1.0)
    with pytest.raises(InvalidArgument, match="delta"):
        IdentitySpend(1.0, 0.0, 3.0)
    spend = ReleaseSpend("r", (AttributeSpend("Male", "laplace", 1.5),),
                         IdentitySpend.from_sigma(1.0, DELTA, sigma=6.0, clip_norm=2.0))
    assert spend.identity.noise_multiplier == 3.0
    assert ReleaseSpend.from_json(spend.to_json()) == spend
    events = spend.events()
    assert events_from_json(events_to_json(events)) == events
    assert spend.nominal_epsilon == pytest.approx(2.5)


@pytest.mark.parametrize("corrupt", [
    {"mechanism": "laplace", "label": "x", "epsilon": 1.0},
    {"mechanism": "laplace", "label": "x", "epsilon": -1.0, "parameter": 2.0},
    {"mechanism": "randomized_response", "label": "x", "epsilon": 1.0, "parameter": 1.5},
    {"mechanism": "gaussian", "label": "x", "epsilon": 1.0, "parameter": "nan"},
    {"mechanism": "quantum", "label": "x", "epsilon": 1.0, "parameter": 1.0},
])
def test_corrupt_stored_events_are_data_loss(corrupt):
    with pytest.raises(DataLoss):
        LedgerEvent.from_json(corrupt)


def test_remaining_under_a_cap_far_above_one_release_is_the_most_one_release_may_spend():
    """A cap of 1000 once made `remaining` ask dp-accounting about eps ~1000, whose randomized
    response parameter overflows a float (an INTERNAL error on every accept)."""
    spent = AttributeSpend("Male", Mechanism.RANDOMIZED_RESPONSE, 1.0).event()
    assert admissible_epsilon([spent], LedgerConfig(cap=1000.0)) == MAX_EPSILON
    assert admissible_epsilon([], LedgerConfig(cap=1000.0)) == MAX_EPSILON
