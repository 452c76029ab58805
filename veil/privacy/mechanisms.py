"""The DP mechanisms as units: one registry entry per mechanism, read by the anonymizer (which
release to run, on what bounds), the ledger (which dp-accounting event a release composes as, at
which parameter) and the protobuf conversion (which enum value names it).

Adding a mechanism: a `Mechanism` member, its value in protos/veil/v1/common.proto's enum (then
`make proto`), its entry in MECHANISMS and its release function in veil.diffusion.mechanisms
(DESIGN section 4). An attribute mechanism's release takes (logits, eps, entry, generator) and
returns the released values; clients, the CLI, ModelInfo, the gateway's checks and the ledger
read the registry. Only an event dp-accounting's PLD accountant cannot compose under REPLACE_ONE
needs veil.ledger.accountant too (as Laplace does).

Conventions (all under the REPLACE_ONE neighbouring relation: one subject's value is replaced by
any other value):

- randomized_response, binary attribute, budget eps: the true class is kept with probability
  e^eps / (1 + e^eps). dp-accounting's RandomizedResponseDpEvent(p, k) keeps the input with
  probability 1 - p + p/k; for k = 2 that is 1 - p/2, so p = 2 / (1 + e^eps), and the privacy loss
  ln((1 - p/2) / (p/2)) is exactly eps.
- laplace, value clipped to the entry's bounds [lo, hi], noise scale b = (hi - lo) / eps (the
  release's `laplace_noise_scale`). Centred, the value has |v| <= C = (hi - lo) / 2, and the
  ledger's noise multiplier is b / C, computed from the same bounds. Replacing v moves it by up to
  2C, so the accountant composes it with sensitivity 2 (as dp-accounting itself does for a
  Gaussian under REPLACE_ONE), which gives exactly eps.
- gaussian (identity latent), clipped to L2 norm C (the model's latent norm) with noise
  N(0, sigma^2 I): noise multiplier sigma / C, calibrated for (eps, delta) when released and
  carried in the receipt. dp-accounting's REPLACE_ONE Gaussian accounts for the 2C sensitivity.

The release functions are torch code: an entry names its function ("module:attribute") and
`release_function()` imports it on first use, so this module (and veil.privacy) stays torch-free
for the gateway; dp-accounting (seconds to import) is imported when an event is first built.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veil.errors import InvalidArgument, quoted
from veil.v1 import common_pb2

if TYPE_CHECKING:
    from dp_accounting.dp_event import DpEvent


class Mechanism(str, enum.Enum):
    RANDOMIZED_RESPONSE = "randomized_response"
    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


class Target(str, enum.Enum):
    """What a mechanism releases: a protected attribute's value, or the identity latent."""

    ATTRIBUTE = "attribute"
    IDENTITY = "identity"


Bounds = tuple[float, float]


def randomized_response_noise_parameter(epsilon: float, bounds: Bounds | None = None) -> float:
    """dp-accounting's noise parameter p of a binary randomized response with budget eps."""
    return 2.0 / (1.0 + math.exp(epsilon))


def laplace_noise_scale(epsilon: float, bounds: Bounds) -> float:
    """The Laplace release's noise scale b = (hi - lo) / eps on a value clipped to `bounds`."""
    low, high = bounds
    return (high - low) / epsilon


def laplace_noise_multiplier(epsilon: float, bounds: Bounds) -> float:
    """The ledger's parameter: the release's noise scale over the clipped value's half-width."""
    low, high = bounds
    return laplace_noise_scale(epsilon, bounds) / ((high - low) / 2)


def randomized_response_event(noise_parameter: float) -> DpEvent:
    from dp_accounting import dp_event
    return dp_event.RandomizedResponseDpEvent(noise_parameter=noise_parameter, num_buckets=2)


def laplace_event(noise_multiplier: float) -> DpEvent:
    from dp_accounting import dp_event
    return dp_event.LaplaceDpEvent(noise_multiplier=noise_multiplier)


def gaussian_event(noise_multiplier: float) -> DpEvent:
    from dp_accounting import dp_event
    return dp_event.GaussianDpEvent(noise_multiplier=noise_multiplier)


@dataclasses.dataclass(frozen=True)
class MechanismSpec:
    mechanism: Mechanism
    proto: int                                     # its common_pb2.Mechanism value
    target: Target
    # The interval of released values (randomized response: its two classes; Laplace: what the
    # release clips to); None: the identity latent's norm, which comes from the model.
    bounds: Bounds | None
    release: str                                   # "module:function" of the torch release
    dp_event: Callable[[float], DpEvent]           # the event of a ledger parameter
    parameter_is_probability: bool                 # the parameter lies in (0, 1), else (0, inf)
    # eps -> the ledger parameter (with the bounds); None: calibrated at release (in the receipt).
    ledger_parameter: Callable[[float, Bounds | None], float] | None

    @property
    def name(self) -> str:
        return self.mechanism.value

    def parameter(self, epsilon: float) -> float:
        """The ledger parameter of a release at `epsilon` (mechanisms whose eps determines it)."""
        if self.ledger_parameter is None:
            raise ValueError(f"{self.name}: the ledger parameter is calibrated at release")
        return self.ledger_parameter(epsilon, self.bounds)

    def valid_parameter(self, value: float) -> bool:
        return 0 < value < (1 if self.parameter_is_probability else math.inf)

    def release_function(self) -> Callable[..., Any]:
        return _load(self.release)


@functools.cache
def _load(reference: str) -> Callable[..., Any]:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


MECHANISMS: dict[Mechanism, MechanismSpec] = {spec.mechanism: spec for spec in (
    MechanismSpec(
        Mechanism.RANDOMIZED_RESPONSE, common_pb2.MECHANISM_RANDOMIZED_RESPONSE, Target.ATTRIBUTE,
        bounds=(-1.0, 1.0), release="veil.diffusion.mechanisms:release_randomized_response",
        dp_event=randomized_response_event,
        parameter_is_probability=True, ledger_parameter=randomized_response_noise_parameter),
    MechanismSpec(
        Mechanism.LAPLACE, common_pb2.MECHANISM_LAPLACE, Target.ATTRIBUTE,
        bounds=(-1.0, 1.0), release="veil.diffusion.mechanisms:release_laplace",
        dp_event=laplace_event,
        parameter_is_probability=False, ledger_parameter=laplace_noise_multiplier),
    MechanismSpec(
        Mechanism.GAUSSIAN, common_pb2.MECHANISM_GAUSSIAN, Target.IDENTITY,
        bounds=None, release="veil.diffusion.mechanisms:gaussian_identity_release",
        dp_event=gaussian_event,
        parameter_is_probability=False, ledger_parameter=None),
)}
ATTRIBUTE_MECHANISMS = tuple(m for m, spec in MECHANISMS.items() if spec.target is Target.ATTRIBUTE)
IDENTITY_MECHANISM = Mechanism.GAUSSIAN


def mechanism_spec(value: Any, what: str) -> MechanismSpec:
    """The entry of a mechanism given by member or name; InvalidArgument naming `what` if unknown."""
    try:
        return MECHANISMS[Mechanism(value)]
    except ValueError:
        known = ", ".join(m.value for m in Mechanism)
        raise InvalidArgument(f"{what}: unknown mechanism {quoted(value)}; known: {known}") from None


def attribute_mechanism(value: Any, what: str) -> Mechanism:
    """A mechanism that releases attributes (the Gaussian is for identity only)."""
    spec = mechanism_spec(value, what)
    if spec.target is not Target.ATTRIBUTE:
        names = " or ".join(m.value for m in ATTRIBUTE_MECHANISMS)
        raise InvalidArgument(f"{what}: attributes are released by {names}; {spec.name} is for identity only")
    return spec.mechanism
