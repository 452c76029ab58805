"""What one released image spends, as dp-accounting events that can be stored and recomposed.

Which event a mechanism composes as, and how its parameter follows from eps, is the mechanism's
entry in veil.privacy.mechanisms (whose docstring states the conventions): the same entry whose
bounds the anonymizer's release uses, so the Laplace sensitivity charged here is derived from the
bounds the release clips to. eps must be finite and > 0 everywhere (veil.privacy.checks).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dp_accounting import dp_event

from veil.errors import DataLoss, InvalidArgument, quoted
from veil.privacy import (IDENTITY, IDENTITY_MECHANISM, MECHANISMS, Mechanism, attribute_mechanism, require_delta,
                          require_epsilon)


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
        return MECHANISMS[self.mechanism].dp_event(self.parameter)

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
        valid_parameter = MECHANISMS[event.mechanism].valid_parameter(event.parameter)
        if not (valid_parameter and math.isfinite(event.epsilon) and event.epsilon > 0):
            raise DataLoss(f"corrupt ledger event {quoted(data)}: parameter or epsilon out of range")
        return event


@dataclasses.dataclass(frozen=True)
class AttributeSpend:
    """A protected attribute released by one of the attribute mechanisms."""

    attribute: str
    mechanism: Mechanism
    epsilon: float

    def __post_init__(self) -> None:
        if not self.attribute or self.attribute == IDENTITY:
            raise InvalidArgument(f"attribute name {quoted(self.attribute)} is not allowed")
        object.__setattr__(self, "mechanism", attribute_mechanism(self.mechanism, self.attribute))
        object.__setattr__(self, "epsilon", require_epsilon(self.epsilon, self.attribute))

    def event(self) -> LedgerEvent:
        parameter = MECHANISMS[self.mechanism].parameter(self.epsilon)
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
        return LedgerEvent(IDENTITY_MECHANISM, IDENTITY, self.epsilon, self.noise_multiplier,
                           self.delta)


@dataclasses.dataclass(frozen=True)
class ReleaseSpend:
    """Everything one released image spends, identified by its receipt: `attributes` and
    `identity` per face, for each of its `faces` anonymized faces (all released at the same
    settings, so each face's events are charged once: N faces, N releases composed)."""

    receipt_id: str
    attributes: tuple[AttributeSpend, ...] = ()
    identity: IdentitySpend | None = None
    faces: int = 1

    def __post_init__(self) -> None:
        if not self.receipt_id or len(self.receipt_id) > 128:
            raise InvalidArgument(f"receipt id must be 1..128 characters, got {quoted(self.receipt_id)}")
        object.__setattr__(self, "attributes", tuple(self.attributes))
        names = [a.attribute for a in self.attributes]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"receipt {self.receipt_id}: an attribute is listed twice: {names}")
        if not self.attributes and self.identity is None:
            raise InvalidArgument(f"receipt {self.receipt_id}: releases nothing to charge")
        if isinstance(self.faces, bool) or not isinstance(self.faces, int) or self.faces < 1:
            raise InvalidArgument(f"receipt {self.receipt_id}: faces must be an integer >= 1, got {quoted(self.faces)}")

    @property
    def nominal_epsilon(self) -> float:
        """Plain sum of the nominal eps (the identity's at its own delta)."""
        return sum(e.epsilon for e in self.events())

    def events(self) -> list[LedgerEvent]:
        events = [a.event() for a in self.attributes]
        if self.identity is not None:
            events.append(self.identity.event())
        return events * self.faces

    def to_json(self) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "attributes": [{"attribute": a.attribute, "mechanism": a.mechanism.value,
                            "epsilon": a.epsilon} for a in self.attributes],
            "identity": None if self.identity is None else dataclasses.asdict(self.identity),
            "faces": self.faces,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseSpend:
        identity = data.get("identity")
        return cls(receipt_id=data["receipt_id"],
                   attributes=tuple(AttributeSpend(a["attribute"], a["mechanism"], a["epsilon"])
                                    for a in data["attributes"]),
                   identity=None if identity is None else IdentitySpend(**identity),
                   faces=data.get("faces", 1))  # spends stored before photos: one face


def events_to_json(events: Sequence[LedgerEvent]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


def events_from_json(data: Sequence[Mapping[str, Any]]) -> list[LedgerEvent]:
    return [LedgerEvent.from_json(item) for item in data]
