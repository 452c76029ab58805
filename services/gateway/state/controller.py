"""The feedback controller: how the owner's answers move eps between rounds (pure functions).

Each budget key (a protected attribute, and "identity" when identity is protected) moves on its
own by the same rule, a bracketing search on a log scale:

- MORE_PRIVACY at eps e: e was too revealing, so e is an upper bound ("hi").
  LESS_PRIVACY at e: e was too protective, so e is a lower bound ("lo").
- Until both bounds are known, MORE multiplies e by `more_factor` (0.5: halves it) and LESS
  divides it by the same factor (doubles it), a symmetric step on the log scale.
- Once both are known (the first reversal: MORE then LESS or vice versa), the next eps is their
  geometric mean sqrt(lo * hi): bisection between the two settings that bracket the owner's
  preference, halving the bracket (in log eps) with every further answer.
- Every proposal is clamped to [eps_min, eps_max].
- Why 0.5 stays the default factor: the simulated owner (reports/privacy-utility.md, 20 probes)
  needed 2.11 +- 0.54 rounds with 0.5 and 2.21 +- 0.65 with 0.7 from level 5, 1.79 with both
  from level 7, and the finer step charged more eps (2.87 vs 2.38 from level 5, 1.61 vs 1.41).
- Answers can be inconsistent: a newer answer that contradicts an older bound replaces it, and
  an owner who keeps asking to move once the bracket has converged (hi / lo <= 1.1) is taken at
  their word: stepping by the factor resumes.
- SET_EPSILON sets values explicitly (each must be finite, > 0 and within the bounds; keys not
  named keep their value) and restarts the search from there: bounds learned before it no
  longer apply, since the owner chose a new starting point.

The bounds come from the rounds since the last SET_EPSILON, so the controller is a function of
the session's history and nothing is stored besides the rounds themselves.

The servicer's order for MORE / LESS / SET_EPSILON: `plan_next_round` (bad input fails here,
before anything is stored), `SessionStore.record_feedback(..., next_settings=...)`, generate
the candidates, `SessionStore.add_round`. After a crash between the last two, the latest round's
`next_settings` says what to regenerate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from veil.config import env_field
from veil.errors import ConfigError, InvalidArgument
from veil.privacy import MAX_EPSILON, PrivacySettings, require_epsilon
from services.gateway.state.models import FeedbackKind, RoundRecord

Budget = Mapping[str, float]
# A bracket [lo, hi] with hi / lo at or below this has converged (about 1/7 of a halving step).
MIN_BRACKET_RATIO = 1.1


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    eps_min: float = env_field("VEIL_EPS_MIN", 0.05, min=0.0,
                               doc="smallest eps the controller proposes (most privacy)")
    eps_max: float = env_field("VEIL_EPS_MAX", 16.0, min=0.0,
                               doc="largest eps the controller proposes (least privacy)")
    more_factor: float = env_field("VEIL_EPS_MORE_FACTOR", 0.5, min=0.0,
                                   doc="MORE_PRIVACY multiplies eps by this (LESS_PRIVACY divides) "
                                       "until the owner's answers bracket a value; in (0, 1)")

    def __post_init__(self) -> None:
        if not 0 < self.eps_min < self.eps_max <= MAX_EPSILON:
            raise ConfigError(f"VEIL_EPS_MIN={self.eps_min!r}, VEIL_EPS_MAX={self.eps_max!r}: "
                              f"need 0 < min < max <= {MAX_EPSILON:g}")
        if not 0 < self.more_factor < 1:
            raise ConfigError(f"VEIL_EPS_MORE_FACTOR={self.more_factor!r}: need 0 < factor < 1")

    def clamp(self, eps: float) -> float:
        return min(self.eps_max, max(self.eps_min, eps))


@dataclasses.dataclass(frozen=True)
class Step:
    """One past round: the budget it used and the feedback it received."""

    budget: Budget
    feedback: FeedbackKind


def validate_budget(requested: Budget, current: Budget, config: ControllerConfig) -> dict[str, float]:
    """`current` with the explicitly requested values, each checked (SET_EPSILON, or explicit
    budgets at session start). Unknown keys and eps outside [eps_min, eps_max] are InvalidArgument."""
    unknown = sorted(set(requested) - set(current))
    if unknown:
        raise InvalidArgument(f"unknown budget key(s) {unknown}; this session budgets "
                              f"{sorted(current)}")
    budget = dict(current)
    for key, value in requested.items():
        eps = require_epsilon(value, key)
        if not config.eps_min <= eps <= config.eps_max:
            raise InvalidArgument(f"{key}: epsilon {eps:g} outside [{config.eps_min:g}, "
                                  f"{config.eps_max:g}]")
        budget[key] = eps
    return budget


def bracket(history: Sequence[Step], key: str) -> tuple[float | None, float | None]:
    """(lo, hi) for `key` from the rounds since the last SET_EPSILON: the largest eps answered
    LESS_PRIVACY and the smallest answered MORE_PRIVACY (None while unknown). A newer answer
    that contradicts an older bound (MORE at or below lo, LESS at or above hi) drops that bound."""
    lo = hi = None
    for step in history:
        if step.feedback is FeedbackKind.SET_EPSILON:
            lo = hi = None
        elif key in step.budget:
            eps = step.budget[key]
            if step.feedback is FeedbackKind.LESS_PRIVACY:
                lo = eps if lo is None else max(lo, eps)
                hi = None if hi is not None and hi <= eps else hi
            elif step.feedback is FeedbackKind.MORE_PRIVACY:
                hi = eps if hi is None else min(hi, eps)
                lo = None if lo is not None and lo >= eps else lo
    return lo, hi


def propose(eps: float, lo: float | None, hi: float | None, feedback: FeedbackKind,
            config: ControllerConfig) -> float:
    """The next eps for one key after `feedback` at `eps`, given the bracket including it.

    Once the bracket is narrower than MIN_BRACKET_RATIO and the owner still asks to move, their
    preference lies outside it (answers are noisy): step out by the factor again."""
    if lo is not None and hi is not None and hi / lo > MIN_BRACKET_RATIO:
        return config.clamp(math.sqrt(lo * hi))
    if feedback is FeedbackKind.MORE_PRIVACY:
        return config.clamp(eps * config.more_factor)
    return config.clamp(eps / config.more_factor)


def next_budget(history: Sequence[Step], config: ControllerConfig,
                requested: Budget | None = None) -> dict[str, float]:
    """The budget of the next round. `history` is every round so far in order, the last one
    carrying the feedback just given (MORE_PRIVACY, LESS_PRIVACY or SET_EPSILON, the latter with
    `requested` holding the explicit values)."""
    if not history:
        raise InvalidArgument("no round to give feedback on")
    current = history[-1]
    if current.feedback is FeedbackKind.SET_EPSILON:
        if not requested:
            raise InvalidArgument("SET_EPSILON needs at least one epsilon")
        return validate_budget(requested, current.budget, config)
    if current.feedback not in (FeedbackKind.MORE_PRIVACY, FeedbackKind.LESS_PRIVACY):
        raise InvalidArgument(f"feedback {current.feedback.value} does not move epsilon")
    if requested:
        raise InvalidArgument(f"{current.feedback.value} takes no explicit epsilon")
    budget = {}
    for key, eps in current.budget.items():
        lo, hi = bracket(history, key)
        budget[key] = propose(eps, lo, hi, current.feedback, config)
    return budget


def plan_next_round(rounds: Sequence[RoundRecord], feedback: FeedbackKind,
                    config: ControllerConfig, requested: Budget | None = None) -> PrivacySettings:
    """The settings of the round after `feedback` on the latest of `rounds` (all rounds of the
    session in order; every one but the latest already answered)."""
    if not rounds:
        raise InvalidArgument("no round to give feedback on")
    if rounds[-1].feedback is not None:
        raise InvalidArgument(f"round {rounds[-1].number} was already answered")
    history = [Step(r.settings.budget(), r.feedback) for r in rounds[:-1]]
    history.append(Step(rounds[-1].settings.budget(), FeedbackKind(feedback)))
    return rounds[-1].settings.with_budget(next_budget(history, config, requested))

