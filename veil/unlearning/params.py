"""Training and unlearning hyperparameters (no torch import: the CLI builds these cheaply).

Every count and scale has an upper bound, checked where a value is built (a request, a CLI flag,
a stored spec): the work of one job is bounded by them, so no call can hold the worker for years.
The bounds are far above what the shipped models need (12 training epochs, 40 CG iterations):
- MAX_EPOCHS: training and fine-tune epochs.
- MAX_ITERATIONS: CG / LiSSA iterations of a second order update.
- MAX_HESSIAN_SAMPLES: training examples the curvature is estimated on.
- MAX_LAST_K_LAYERS: parameterised blocks an update may be restricted to.
- MAX_BATCH_SIZE: training batch size.
- MAX_TAU, MAX_DAMPING, MAX_SCALE, MAX_UPDATE_RATIO, MAX_LEARNING_RATE, MAX_WEIGHT_DECAY: the
  real-valued hyperparameters (finite, and at most these).
- MAX_REPLACEMENT_PAIRS: pairs of one Unlearn request; MAX_DIGESTS: digests of one
  ListDependentModels request.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from veil.errors import InvalidArgument, quoted

MAX_EPOCHS = 10_000
MAX_ITERATIONS = 10_000
MAX_HESSIAN_SAMPLES = 8192
MAX_LAST_K_LAYERS = 64
MAX_BATCH_SIZE = 4096
MAX_TAU = 1e3
MAX_DAMPING = 1e6
MAX_SCALE = 1e9
MAX_UPDATE_RATIO = 100.0
MAX_LEARNING_RATE = 10.0
MAX_WEIGHT_DECAY = 1.0
MAX_REPLACEMENT_PAIRS = 1000
MAX_DIGESTS = 1000

SOLVERS = ("cg", "lissa")


def require_count(name: str, value: object, low: int, high: int) -> int:
    """`value` if it is an integer in low..high, else InvalidArgument naming `name` and the bounds."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be in {low}..{high}, got {quoted(value)}")
    return value


def _require_at_most(name: str, value: float, bound: float) -> None:
    if value > bound:
        raise InvalidArgument(f"{name} must be at most {bound:g}, got {value!r}")
# "hessian": the exact Hessian of the loss; "gauss-newton": its positive semi-definite Gauss-Newton
# part, which keeps the solve well posed where a network's Hessian has negative curvature.
CURVATURES = ("hessian", "gauss-newton")


@dataclass(frozen=True)
class UnlearnParams:
    """Hyperparameters of an update (recorded in the child version's card)."""

    # First order: step size in units of the summed gradient difference (~0.1 / training set size).
    tau: float = 1e-5
    # Second order: "cg" (conjugate gradient) or "lissa".
    solver: str = "cg"
    curvature: str = "gauss-newton"
    # Added to the curvature's diagonal (mean units) to make it positive definite.
    damping: float = 0.03
    # LiSSA: must exceed the largest eigenvalue of the damped curvature.
    scale: float = 1000.0
    max_iterations: int = 40
    # Early stop on the relative residual (CG) or the relative change of the estimate (LiSSA).
    tolerance: float = 1e-3
    # Only the last k parameterised blocks (0: all).
    last_k_layers: int = 0
    # Training examples on which the Hessian is estimated.
    hessian_samples: int = 512
    # Abort when |theta' - theta| exceeds this multiple of |theta| (a runaway step).
    max_update_ratio: float = 0.5
    # Fine-tune baseline: epochs over the revised training set.
    epochs: int = 1
    # Seeds the Hessian sample and the fine-tune shuffling.
    seed: int = 0

    def __post_init__(self) -> None:
        finite_positive = {"tau": (self.tau, MAX_TAU), "scale": (self.scale, MAX_SCALE),
                           "tolerance": (self.tolerance, 1.0),
                           "max_update_ratio": (self.max_update_ratio, MAX_UPDATE_RATIO)}
        for name, (value, bound) in finite_positive.items():
            if not (math.isfinite(value) and value > 0):
                raise InvalidArgument(f"{name} must be finite and > 0, got {value}")
            _require_at_most(name, value, bound)
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise InvalidArgument(f"damping must be finite and >= 0, got {self.damping}")
        _require_at_most("damping", self.damping, MAX_DAMPING)
        if self.curvature not in CURVATURES:
            raise InvalidArgument(f"curvature must be one of {', '.join(CURVATURES)}, got {quoted(self.curvature)}")
        if self.solver not in SOLVERS:
            raise InvalidArgument(f"solver must be one of {', '.join(SOLVERS)}, got {quoted(self.solver)}")
        for name, low, high in (("max_iterations", 1, MAX_ITERATIONS), ("hessian_samples", 1, MAX_HESSIAN_SAMPLES),
                                ("epochs", 1, MAX_EPOCHS), ("last_k_layers", 0, MAX_LAST_K_LAYERS)):
            require_count(name, getattr(self, name), low, high)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings, recorded in the model card so a retrain reproduces them."""

    seed: int = 0
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        require_count("epochs", self.epochs, 1, MAX_EPOCHS)
        require_count("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InvalidArgument(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        _require_at_most("learning_rate", self.learning_rate, MAX_LEARNING_RATE)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidArgument(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        _require_at_most("weight_decay", self.weight_decay, MAX_WEIGHT_DECAY)
        if not 0 <= self.seed < 2 ** 63:
            raise InvalidArgument(f"seed must be in [0, 2^63), got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**{k: data[k] for k in ("seed", "epochs", "batch_size", "learning_rate",
                                           "weight_decay")})
