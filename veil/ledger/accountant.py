"""Composition of a subject's ledger events with dp-accounting's PLD accountant (REPLACE_ONE).

dp-accounting 0.6.0 has two gaps this module works around, both pinned by tests:
- PLDAccountant refuses LaplaceDpEvent under REPLACE_ONE (it only knows the add/remove form).
  `ReplaceOneAccountant` composes it with sensitivity 2 in noise-multiplier units, the same
  convention dp-accounting applies to its REPLACE_ONE Gaussian (see veil.privacy.mechanisms).
- `compose(RandomizedResponseDpEvent, count)` ignores `count`; events are therefore always
  composed one at a time, never as a SelfComposedDpEvent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation

from veil.config import env_field
from veil.errors import ConfigError, FailedPrecondition
from veil.ledger.events import LedgerEvent
from veil.privacy import ATTRIBUTE_MECHANISMS, MAX_EPSILON, MECHANISMS

# What a charge at exactly the cap may compose to above it from the order of the convolutions: a
# remaining budget is only reported where it is admitted with this much to spare.
ADMISSION_SLACK = 1e-9

# In units of the clipping norm C (the noise multiplier's unit): replacing a value clipped to
# norm or half-width C moves it by up to 2C.
REPLACE_ONE_SENSITIVITY = 2.0


class BudgetExceeded(FailedPrecondition):
    """A charge would push a subject's composed epsilon past the cap (nothing was charged)."""


class ReplaceOneAccountant(PLDAccountant):
    """PLDAccountant(REPLACE_ONE) that also composes LaplaceDpEvent (see module docstring)."""

    def __init__(self, value_discretization_interval: float = 1e-4) -> None:
        super().__init__(NeighboringRelation.REPLACE_ONE, value_discretization_interval)

    def _maybe_compose(self, event: dp_event.DpEvent, count: int, do_compose: bool):
        if not isinstance(event, dp_event.LaplaceDpEvent):
            return super()._maybe_compose(event, count, do_compose)
        if do_compose:
            laplace = privacy_loss_distribution.from_laplace_mechanism(
                parameter=event.noise_multiplier, sensitivity=REPLACE_ONE_SENSITIVITY,
                value_discretization_interval=self._value_discretization_interval)
            self._pld = self._pld.compose(laplace.self_compose(count))
        return None


@dataclasses.dataclass(frozen=True)
class LedgerConfig:
    cap: float = env_field("VEIL_LEDGER_CAP", 10.0, min=0.0,
                           doc="cap on a subject's composed epsilon; releases past it are refused")
    delta: float = env_field("VEIL_LEDGER_DELTA", 1e-6, min=0.0, max=1.0,
                             doc="delta at which the composed epsilon is reported and capped")
    discretization: float = env_field(
        "VEIL_LEDGER_DISCRETIZATION", 1e-3, min=0.0, max=0.1,
        doc="PLD value discretization interval (pessimistic: a coarser grid only over-counts)")

    def __post_init__(self) -> None:
        if not self.cap > 0:
            raise ConfigError(f"VEIL_LEDGER_CAP={self.cap!r}: must be > 0")
        if not 0 < self.delta < 1:
            raise ConfigError(f"VEIL_LEDGER_DELTA={self.delta!r}: must be in (0, 1)")
        if not self.discretization > 0:
            raise ConfigError(f"VEIL_LEDGER_DISCRETIZATION={self.discretization!r}: must be > 0")


@dataclasses.dataclass(frozen=True)
class Composition:
    """Spent budget: PLD composition at `delta`, and the plain sum of nominal eps beside it."""

    composed_epsilon: float
    sum_epsilon: float
    delta: float
    event_count: int


def compose(events: Iterable[LedgerEvent], delta: float, discretization: float = 1e-3) -> Composition:
    """Compose `events` (in any order: composition is commutative) and report eps at `delta`."""
    accountant = ReplaceOneAccountant(value_discretization_interval=discretization)
    total, count = 0.0, 0
    for event in events:
        accountant.compose(event.to_dp_event())
        total += event.epsilon
        count += 1
    composed = accountant.get_epsilon(delta) if count else 0.0
    # A pure-DP composition can come out a hair below zero from floating point.
    composed = max(0.0, float(composed))
    if not math.isfinite(composed):
        raise ArithmeticError(f"composition of {count} events is not finite: {composed}")
    return Composition(composed, total, delta, count)


def admissible_epsilon(events: Sequence[LedgerEvent], config: LedgerConfig) -> float:
    """A subject's `remaining` budget after `events`: the largest epsilon on the ledger's grid
    (multiples of `config.discretization`) at which a release of one more attribute, by any
    attribute mechanism, passes the cap check. Composition is not additive, so cap minus the
    composed eps can be a hair above what is admitted (0.500007 reported, 0.5 refused); this
    value is admitted by construction. It is at most MAX_EPSILON, the most one release may spend."""
    grid = config.discretization
    spent = ReplaceOneAccountant(value_discretization_interval=grid)
    for event in events:
        spent.compose(event.to_dp_event())
    composed = max(0.0, float(spent.get_epsilon(config.delta))) if events else 0.0

    def admitted(steps: int) -> bool:
        epsilon = round(steps * grid, 9)
        for mechanism in ATTRIBUTE_MECHANISMS:
            spec = MECHANISMS[mechanism]
            release = ReplaceOneAccountant(value_discretization_interval=grid)
            release.compose(spec.dp_event(spec.parameter(epsilon)))
            after = spent._pld.compose(release._pld).get_epsilon_for_delta(config.delta)
            if after > config.cap - ADMISSION_SLACK:
                return False
        return True

    # Start at cap minus the composed eps (admitted unless composition is super-additive here)
    # and bisect below it otherwise: admission is monotone in the epsilon.
    # No release may spend more than MAX_EPSILON, so remaining never reports more (a cap far above
    # it would otherwise ask dp-accounting about eps whose parameters overflow a float).
    low, high = 0, math.floor(min(config.cap - composed, MAX_EPSILON) / grid)
    if high <= 0 or admitted(high):
        return round(max(high, 0) * grid, 9)
    while high - low > 1:
        middle = (low + high) // 2
        if admitted(middle):
            low = middle
        else:
            high = middle
    return round(low * grid, 9)
