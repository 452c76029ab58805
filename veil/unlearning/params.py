"""Training and unlearning hyperparameters (no torch import: the CLI builds these cheaply)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from veil.errors import InvalidArgument, quoted

SOLVERS = ("cg", "lissa")
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
        finite_positive = {"tau": self.tau, "scale": self.scale, "tolerance": self.tolerance,
                           "max_update_ratio": self.max_update_ratio}
        for name, value in finite_positive.items():
            if not (math.isfinite(value) and value > 0):
                raise InvalidArgument(f"{name} must be finite and > 0, got {value}")
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise InvalidArgument(f"damping must be finite and >= 0, got {self.damping}")
        if self.curvature not in CURVATURES:
            raise InvalidArgument(f"curvature must be one of {', '.join(CURVATURES)}, got {quoted(self.curvature)}")
        if self.solver not in SOLVERS:
            raise InvalidArgument(f"solver must be one of {', '.join(SOLVERS)}, got {quoted(self.solver)}")
        for name in ("max_iterations", "hessian_samples", "epochs"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.last_k_layers < 0:
            raise InvalidArgument(f"last_k_layers must be >= 0, got {self.last_k_layers}")

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
        if self.epochs < 1:
            raise InvalidArgument(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InvalidArgument(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidArgument(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if not 0 <= self.seed < 2 ** 63:
            raise InvalidArgument(f"seed must be in [0, 2^63), got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**{k: data[k] for k in ("seed", "epochs", "batch_size", "learning_rate",
                                           "weight_decay")})
