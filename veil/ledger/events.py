"""What one released image spends, as dp-accounting events that can be stored and recomposed.

Conventions (all under the REPLACE_ONE neighbouring relation: one subject's value is replaced by
any other value):

- randomized_response, binary attribute, budget eps: the true class is kept with probability
  e^eps / (1 + e^eps). dp-accounting's RandomizedResponseDpEvent(p, k) keeps the input with
  probability 1 - p + p/k; for k = 2 that is 1 - p/2, so p = 2 / (1 + e^eps), and the privacy loss
  ln((1 - p/2) / (p/2)) is exactly eps.
- laplace, value clipped to [lo, hi], noise scale b = (hi - lo) / eps: centred, the value has
  |v| <= C = (hi - lo) / 2, and dp-accounting's noise multiplier is b / C = 2 / eps. Replacing v
  moves it by up to 2C, so the accountant composes it with sensitivity 2 (as dp-accounting itself
  does for a Gaussian under REPLACE_ONE), which gives exactly eps.
- gaussian (identity latent), clipped to L2 norm C with noise N(0, sigma^2 I): noise multiplier
  sigma / C. dp-accounting's REPLACE_ONE Gaussian accounts for the 2C sensitivity itself. Use
  `calibrate_gaussian_noise_multiplier(eps, delta)` to pick sigma = multiplier * C.

eps must be finite and > 0 everywhere: 0, negative, NaN or infinite budgets are InvalidArgument,
never charged (a negative charge would raise the remaining budget).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dp_accounting import dp_event

from veil.errors import DataLoss, InvalidArgument, quoted

IDENTITY = "identity"


class Mechanism(str, enum.Enum):
    RANDOMIZED_RESPONSE = "randomized_response"
    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


def require_epsilon(value: Any, what: str) -> float:
    """`value` as a float if it is a finite number > 0, else InvalidArgument naming `what`."""
    try:
        eps = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: epsilon must be a number, got {quoted(value)}") from None
    if not math.isfinite(eps) or eps <= 0:
        raise InvalidArgument(f"{what}: epsilon must be finite and > 0, got {quoted(value)}")
    return eps


def require_delta(value: Any, what: str) -> float:
    try:
        delta = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: delta must be a number, got {quoted(value)}") from None
    if not 0 < delta < 1:
        raise InvalidArgument(f"{what}: delta must be in (0, 1), got {quoted(value)}")
    return delta


def parse_mechanism(value: Any, what: str) -> Mechanism:
    try:
        return Mechanism(value)
    except ValueError:
        known = ", ".join(m.value for m in Mechanism)
        raise InvalidArgument(f"{what}: unknown mechanism {quoted(value)}; known: {known}") from None


def randomized_response_noise_parameter(epsilon: float) -> float:
    """dp-accounting's noise parameter p of a binary randomized response with budget eps."""
    return 2.0 / (1.0 + math.exp(epsilon))


@functools.lru_cache(maxsize=256)
def calibrate_gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """The smallest noise multiplier sigma / C whose Gaussian is (eps, delta)-DP under REPLACE_ONE,
    found with dp-accounting's PLD accountant (the textbook formula only holds for eps < 1)."""
    from dp_accounting import calibrate_dp_mechanism
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    from dp_accounting.privacy_accountant import NeighboringRelation

    epsilon = require_epsilon(epsilon, "gaussian")
    delta = require_delta(delta, "gaussian")
    # A 1e-3 grid instead of the default 1e-4: an order of magnitude faster for large eps (64:
    # 4 s instead of 60 s), and the PLD's pessimistic estimate keeps the result an upper bound.
    return float(calibrate_dp_mechanism(
        lambda: PLDAccountant(NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-3),
        dp_event.GaussianDpEvent, epsilon, delta))


@dataclasses.dataclass(frozen=True)
class LedgerEvent:
    """One mechanism applied to one subject's data: nominal eps plus the exact parameter used.

    `parameter` is the RR noise parameter p, or the Laplace / Gaussian noise multiplier.
    `delta` is the Gaussian's nominal delta (0 for the pure-DP mechanisms).
    """

    mechanism: Mechanism
    label: str
    epsilon: float
    parameter: float
    delta: float = 0.0

    def to_dp_event(self) -> dp_event.DpEvent:
        if self.mechanism is Mechanism.RANDOMIZED_RESPONSE:
            return dp_event.RandomizedResponseDpEvent(noise_parameter=self.parameter, num_buckets=2)
        if self.mechanism is Mechanism.LAPLACE:
            return dp_event.LaplaceDpEvent(noise_multiplier=self.parameter)
        return dp_event.GaussianDpEvent(noise_multiplier=self.parameter)

    def to_json(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism.value, "label": self.label, "epsilon": self.epsilon,
                "parameter": self.parameter, "delta": self.delta}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerEvent:
        """Parse a stored event; anything malformed is DataLoss (the ledger row is corrupt)."""
        try:
            event = cls(mechanism=Mechanism(data["mechanism"]), label=str(data["label"]),
                        epsilon=float(data["epsilon"]), parameter=float(data["parameter"]),
                        delta=float(data.get("delta", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataLoss(f"corrupt ledger event {quoted(data)}: {exc}") from None
        valid_parameter = (0 < event.parameter < 1 if event.mechanism is Mechanism.RANDOMIZED_RESPONSE
                           else 0 < event.parameter < math.inf)
        if not (valid_parameter and math.isfinite(event.epsilon) and event.epsilon > 0):
            raise DataLoss(f"corrupt ledger event {quoted(data)}: parameter or epsilon out of range")
        return event


@dataclasses.dataclass(frozen=True)
class AttributeSpend:
    """A protected attribute released by randomized response or the Laplace mechanism."""

    attribute: str
    mechanism: Mechanism
    epsilon: float

    def __post_init__(self) -> None:
        if not self.attribute or self.attribute == IDENTITY:
            raise InvalidArgument(f"attribute name {quoted(self.attribute)} is not allowed")
        mechanism = parse_mechanism(self.mechanism, self.attribute)
        if mechanism is Mechanism.GAUSSIAN:
            raise InvalidArgument(f"{self.attribute}: the gaussian mechanism is for identity only")
        object.__setattr__(self, "mechanism", mechanism)
        object.__setattr__(self, "epsilon", require_epsilon(self.epsilon, self.attribute))

    def event(self) -> LedgerEvent:
        if self.mechanism is Mechanism.RANDOMIZED_RESPONSE:
            parameter = randomized_response_noise_parameter(self.epsilon)
        else:
            parameter = 2.0 / self.epsilon
        return LedgerEvent(self.mechanism, self.attribute, self.epsilon, parameter)


@dataclasses.dataclass(frozen=True)
class IdentitySpend:
    """The Gaussian mechanism on the identity latent: nominal (eps, delta) and its noise multiplier."""

    epsilon: float
    delta: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", require_epsilon(self.epsilon, IDENTITY))
        object.__setattr__(self, "delta", require_delta(self.delta, IDENTITY))
        nm = float(self.noise_multiplier)
        if not math.isfinite(nm) or nm <= 0:
            raise InvalidArgument(f"identity: noise multiplier must be finite and > 0, got {quoted(nm)}")
        object.__setattr__(self, "noise_multiplier", nm)

    @classmethod
    def from_sigma(cls, epsilon: float, delta: float, sigma: float, clip_norm: float) -> IdentitySpend:
        """From the mechanism's noise sigma and the clipping norm C of the latent."""
        if not (math.isfinite(clip_norm) and clip_norm > 0):
            raise InvalidArgument(f"identity: clip norm must be finite and > 0, got {quoted(clip_norm)}")
        return cls(epsilon, delta, sigma / clip_norm)

    def event(self) -> LedgerEvent:
        return LedgerEvent(Mechanism.GAUSSIAN, IDENTITY, self.epsilon, self.noise_multiplier,
                           self.delta)


@dataclasses.dataclass(frozen=True)
class ReleaseSpend:
    """Everything one released image spends, identified by its receipt."""

    receipt_id: str
    attributes: tuple[AttributeSpend, ...] = ()
    identity: IdentitySpend | None = None

    def __post_init__(self) -> None:
        if not self.receipt_id or len(self.receipt_id) > 128:
            raise InvalidArgument(f"receipt id must be 1..128 characters, got {quoted(self.receipt_id)}")
        object.__setattr__(self, "attributes", tuple(self.attributes))
        names = [a.attribute for a in self.attributes]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"receipt {self.receipt_id}: an attribute is listed twice: {names}")
        if not self.attributes and self.identity is None:
            raise InvalidArgument(f"receipt {self.receipt_id}: releases nothing to charge")

    @property
    def nominal_epsilon(self) -> float:
        """Plain sum of the nominal eps (the identity's at its own delta)."""
        return sum(e.epsilon for e in self.events())

    def events(self) -> list[LedgerEvent]:
        events = [a.event() for a in self.attributes]
        if self.identity is not None:
            events.append(self.identity.event())
        return events

    def to_json(self) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "attributes": [{"attribute": a.attribute, "mechanism": a.mechanism.value,
                            "epsilon": a.epsilon} for a in self.attributes],
            "identity": None if self.identity is None else dataclasses.asdict(self.identity),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseSpend:
        identity = data.get("identity")
        return cls(receipt_id=data["receipt_id"],
                   attributes=tuple(AttributeSpend(a["attribute"], a["mechanism"], a["epsilon"])
                                    for a in data["attributes"]),
                   identity=None if identity is None else IdentitySpend(**identity))


def events_to_json(events: Sequence[LedgerEvent]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


def events_from_json(data: Sequence[Mapping[str, Any]]) -> list[LedgerEvent]:
    return [LedgerEvent.from_json(item) for item in data]
