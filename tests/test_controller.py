"""The feedback controller's eps sequences."""

import math

import pytest

from veil.errors import ConfigError, InvalidArgument
from services.gateway.state import (
    ControllerConfig,
    FeedbackKind,
    Step,
    next_budget,
    plan_next_round,
    validate_budget,
)

MORE, LESS, SET = FeedbackKind.MORE_PRIVACY, FeedbackKind.LESS_PRIVACY, FeedbackKind.SET_EPSILON
CONFIG = ControllerConfig(eps_min=0.05, eps_max=16.0)


def run(start: dict, answers: list, config: ControllerConfig = CONFIG) -> list[dict]:
    """Feed `answers` (a FeedbackKind, or (SET, values)) from `start`; every budget proposed."""
    history: list[Step] = []
    budget, seen = dict(start), [dict(start)]
    for answer in answers:
        kind, requested = (answer if isinstance(answer, tuple) else (answer, None))
        history.append(Step(budget, kind))
        budget = next_budget(history, config, requested)
        seen.append(budget)
    return seen


def test_more_halves_and_less_doubles_until_a_reversal():
    seen = run({"Male": 4.0}, [MORE, MORE])
    assert [b["Male"] for b in seen] == [4.0, 2.0, 1.0]
    seen = run({"Male": 1.0}, [LESS, LESS])
    assert [b["Male"] for b in seen] == [1.0, 2.0, 4.0]


def test_the_more_factor_sets_the_step_both_ways():
    config = ControllerConfig(eps_min=0.05, eps_max=16.0, more_factor=0.7)
    assert [b["Male"] for b in run({"Male": 2.0}, [MORE, MORE], config)] == pytest.approx([2.0, 1.4, 0.98])
    assert [b["Male"] for b in run({"Male": 0.98}, [LESS, LESS], config)] == pytest.approx([0.98, 1.4, 2.0])
    # The reversal still bisects between the bracketing settings, whatever the step.
    assert run({"Male": 2.0}, [MORE, LESS], config)[2]["Male"] == pytest.approx(math.sqrt(1.4 * 2.0))


def test_reversal_bisects_geometrically_between_the_last_two_settings():
    seen = [b["Male"] for b in run({"Male": 4.0}, [MORE, LESS])]
    assert seen[:2] == [4.0, 2.0]
    assert seen[2] == pytest.approx(math.sqrt(2.0 * 4.0))
    # Further answers keep halving the log-bracket: LESS at 2.83 -> between 2.83 and 4.
    seen = [b["Male"] for b in run({"Male": 4.0}, [MORE, LESS, LESS, MORE])]
    assert seen[3] == pytest.approx(math.sqrt(math.sqrt(8.0) * 4.0))
    assert seen[4] == pytest.approx(math.sqrt(math.sqrt(8.0) * seen[3]))
    assert 2.0 < seen[4] < 4.0


def test_less_then_more_bisects_too():
    seen = [b["Male"] for b in run({"Male": 1.0}, [LESS, MORE])]
    assert seen == pytest.approx([1.0, 2.0, math.sqrt(2.0)])


def test_bounds_clamp_every_proposal():
    config = ControllerConfig(eps_min=0.5, eps_max=4.0)
    assert [b["Male"] for b in run({"Male": 1.0}, [MORE, MORE, MORE], config)] == [1.0, 0.5, 0.5, 0.5]
    assert [b["Male"] for b in run({"Male": 2.0}, [LESS, LESS], config)] == [2.0, 4.0, 4.0]


def test_each_key_moves_by_its_own_bracket():
    seen = run({"Male": 4.0, "identity": 1.0}, [MORE, LESS])
    assert seen[1] == {"Male": 2.0, "identity": 0.5}
    assert seen[2]["Male"] == pytest.approx(math.sqrt(8.0))
    assert seen[2]["identity"] == pytest.approx(math.sqrt(0.5))


def test_set_epsilon_sets_validates_and_restarts_the_search():
    seen = run({"Male": 4.0, "Young": 4.0}, [MORE, (SET, {"Male": 3.0}), LESS])
    assert seen[2] == {"Male": 3.0, "Young": 2.0}
    # The bracket from before SET is forgotten: LESS doubles instead of bisecting.
    assert seen[3] == {"Male": 6.0, "Young": 4.0}
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InvalidArgument, match="finite and > 0"):
            run({"Male": 1.0}, [(SET, {"Male": bad})])
    with pytest.raises(InvalidArgument, match=r"outside \[0.05, 16\]"):
        run({"Male": 1.0}, [(SET, {"Male": 32.0})])
    with pytest.raises(InvalidArgument, match="unknown budget key"):
        run({"Male": 1.0}, [(SET, {"Smiling": 1.0})])
    with pytest.raises(InvalidArgument, match="at least one"):
        run({"Male": 1.0}, [(SET, {})])


def test_feedback_that_does_not_move_eps_is_refused():
    with pytest.raises(InvalidArgument, match="does not move"):
        next_budget([Step({"Male": 1.0}, FeedbackKind.ACCEPT)], CONFIG)
    with pytest.raises(InvalidArgument, match="no explicit"):
        next_budget([Step({"Male": 1.0}, MORE)], CONFIG, {"Male": 2.0})
    with pytest.raises(InvalidArgument, match="no round"):
        next_budget([], CONFIG)


def test_an_owner_who_contradicts_a_converged_bracket_is_followed():
    # LESS at 4 then MORE until the bracket (4, x) converges; a further MORE steps out below 4.
    seen = [b["Male"] for b in run({"Male": 4.0}, [LESS] + [MORE] * 5)]
    assert seen[1] == 8.0
    assert all(4.0 < eps < 8.0 for eps in seen[2:5])
    assert seen[-1] < 4.0


def test_validate_budget_and_config():
    assert validate_budget({"Male": 2.0}, {"Male": 1.0, "identity": 1.0}, CONFIG) == {
        "Male": 2.0, "identity": 1.0}
    with pytest.raises(ConfigError):
        ControllerConfig(eps_min=2.0, eps_max=1.0)
    with pytest.raises(ConfigError):
        ControllerConfig(eps_min=0.0, eps_max=1.0)
    for factor in (0.0, 1.0, 2.0):
        with pytest.raises(ConfigError):
            ControllerConfig(more_factor=factor)


def test_plan_next_round_uses_the_session_history():
    from datetime import UTC, datetime

    from veil.privacy import PrivacySettings
    from services.gateway.state import RoundRecord

    def round_(number, eps, feedback):
        settings = PrivacySettings({"Male": eps}, eps / 2, 0.25, 3 if number == 1 else -1)
        return RoundRecord("s", number, settings, (), feedback, None, datetime.now(UTC), None)

    rounds = [round_(1, 4.0, MORE), round_(2, 2.0, None)]
    planned = plan_next_round(rounds, LESS, CONFIG)
    assert planned.attribute_epsilon == {"Male": pytest.approx(math.sqrt(8.0))}
    assert planned.identity_epsilon == pytest.approx(math.sqrt(2.0))   # 2 -> 1 -> sqrt(1 * 2)
    assert (planned.rho, planned.level) == (0.25, -1)
    explicit = plan_next_round(rounds, SET, CONFIG, {"identity": 0.5})
    assert (explicit.attribute_epsilon, explicit.identity_epsilon) == ({"Male": 2.0}, 0.5)
    assert explicit.level == -1
    with pytest.raises(InvalidArgument, match="already answered"):
        plan_next_round(rounds[:1], MORE, CONFIG)
