"""Feature unlearning (Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023).

Replacing training points Z by Z~ (same labels, different features) moves the optimum of
    L(theta) = mean_i l(z_i; theta) + weight_decay/2 * |theta|^2        (n = training set size)
by approximately -H^{-1} Delta / n, where Delta = sum_{z~} grad l(z~) - sum_{z} grad l(z) and H is
the Hessian of L. Both are kept in these units: the gradient difference is divided by n and H is the
mean curvature of l over a sample of the training set plus (weight_decay + damping) * I, so the
second-order step is the Newton step of the revised objective. The curvature is the exact Hessian
or its Gauss-Newton part (positive semi-definite, so the solve stays well posed on a network whose
Hessian has negative curvature; identical for a linear model). The first-order step is
theta - tau * Delta with Delta in sum units, as in the paper.

The model is an nn.Sequential; an update may be restricted to the last k parameterised blocks, in
which case the earlier blocks' outputs are computed once and the solver works on the small suffix.
Nothing is modified in place: an update returns a new state dict, or raises Aborted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, grad

from veil.errors import Aborted, InvalidArgument, quoted
from veil.unlearning.params import CURVATURES, UnlearnParams
from veil.unlearning.solvers import SolveResult, conjugate_gradient, lissa
from veil.unlearning.training import ProgressFn, Stopwatch, batched, per_sample_loss

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class UpdateResult:
    state_dict: dict[str, torch.Tensor]
    # Diagnostics for the model card: norms, solver iterations and residual, updated parameters.
    stats: dict[str, float | int | bool | str] = field(default_factory=dict)
    wall_time_seconds: float = 0.0
    cpu_time_seconds: float = 0.0

    def timed(self, stopwatch: Stopwatch) -> UpdateResult:
        self.wall_time_seconds, self.cpu_time_seconds = stopwatch.wall_seconds, stopwatch.cpu_seconds
        return self


def _flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


class _CurvatureChunk:
    """Part of the Hessian sample with its autograd graph built once, so that each curvature-vector
    product is backward passes through that graph (double backward), not a new forward pass."""

    def __init__(self, suffix: nn.Module, params: dict[str, torch.Tensor], features: torch.Tensor,
                 targets: torch.Tensor, loss: PerSampleLoss, curvature: str) -> None:
        self._curvature = curvature
        self._params = [p.detach().requires_grad_() for p in params.values()]
        with torch.enable_grad():
            outputs = functional_call(suffix, dict(zip(params, self._params)), (features,))
            if curvature == "hessian":
                self._gradient = torch.autograd.grad(loss(outputs, targets).sum(), self._params,
                                                     create_graph=True)
                return
            # Gauss-Newton J^T H_out J: J v is the derivative of u -> J^T u (linear in u) taken
            # against v; H_out is the loss's Hessian in output space.
            self._outputs = outputs
            self._probe = torch.zeros_like(outputs, requires_grad=True)
            self._pullback = torch.autograd.grad(outputs, self._params, self._probe, create_graph=True)
            self._logits = outputs.detach().requires_grad_()
            (self._loss_gradient,) = torch.autograd.grad(loss(self._logits, targets).sum(),
                                                         self._logits, create_graph=True)

    def product(self, tangents: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Summed curvature of the chunk's per-sample losses applied to `tangents`."""
        with torch.enable_grad():
            if self._curvature == "hessian":
                return torch.autograd.grad(self._gradient, self._params, tangents, retain_graph=True,
                                           materialize_grads=True)
            (jacobian_tangent,) = torch.autograd.grad(self._pullback, self._probe, tangents,
                                                      retain_graph=True)
            (curved,) = torch.autograd.grad(self._loss_gradient, self._logits, jacobian_tangent,
                                            retain_graph=True)
            return torch.autograd.grad(self._outputs, self._params, curved, retain_graph=True,
                                       materialize_grads=True)


class FeatureUnlearner:
    """First- and second-order feature unlearning for one model (an nn.Sequential)."""

    def __init__(self, model: nn.Sequential, *, weight_decay: float, train_size: int,
                 last_k_layers: int = 0, loss: PerSampleLoss = per_sample_loss,
                 batch_size: int = 256) -> None:
        if not isinstance(model, nn.Sequential):
            raise InvalidArgument("the unlearner needs an nn.Sequential model")
        if train_size < 1:
            raise InvalidArgument(f"train_size must be >= 1, got {train_size}")
        blocks_with_parameters = [i for i, block in enumerate(model)
                                  if next(block.parameters(), None) is not None]
        if last_k_layers > len(blocks_with_parameters):
            raise InvalidArgument(f"last_k_layers={last_k_layers} but the model has only "
                                  f"{len(blocks_with_parameters)} parameterised layers")
        start = blocks_with_parameters[-last_k_layers] if last_k_layers else 0
        self._model = model.eval()
        self._prefix = model[:start]
        self._suffix = model[start:]
        self._weight_decay = weight_decay
        self._train_size = train_size
        self._loss = loss
        self._batch_size = batch_size
        self._params = {name: p.detach() for name, p in self._suffix.named_parameters()}
        self._shapes = {name: p.shape for name, p in self._params.items()}
        self._grad = grad(self._loss_sum)

    @property
    def updated_parameter_names(self) -> list[str]:
        return list(self._params)

    def _loss_sum(self, params: dict[str, torch.Tensor], features: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
        return self._loss(functional_call(self._suffix, params, (features,)), targets).sum()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return batched(self._prefix, images, self._batch_size) if len(self._prefix) else images

    def _unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape in self._shapes.items():
            size = math.prod(shape)
            out[name] = vector[offset:offset + size].view(shape)
            offset += size
        return out

    def _gradient_sum(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(sum(math.prod(s) for s in self._shapes.values()),
                            dtype=next(iter(self._params.values())).dtype)
        for i in range(0, features.shape[0], self._batch_size):
            chunk = self._grad(self._params, features[i:i + self._batch_size],
                               targets[i:i + self._batch_size])
            total += _flatten(chunk)
        return total

    def _delta(self, originals: torch.Tensor, replacements: torch.Tensor,
               targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Delta = sum grad l(Z~) - sum grad l(Z) over the updated parameters (a flat vector), with
        the norms of its halves for the card. The originals' half is all an update learns of what
        the originals put into the model: near zero where the parent fits them exactly (a
        memorising parent), and then no gradient-based update can find it."""
        if originals.shape != replacements.shape:
            raise InvalidArgument(f"originals have shape {tuple(originals.shape)} but replacements "
                                  f"have {tuple(replacements.shape)}")
        if originals.shape[0] != targets.shape[0]:
            raise InvalidArgument(f"{originals.shape[0]} pairs but {targets.shape[0]} label rows")
        if originals.shape[0] == 0:
            raise InvalidArgument("no replacement pairs")
        replaced = self._gradient_sum(self._features(replacements), targets)
        original = self._gradient_sum(self._features(originals), targets)
        delta = replaced - original
        return delta, {"delta_norm": float(delta.norm()),
                       "original_gradient_norm": float(original.norm()),
                       "replacement_gradient_norm": float(replaced.norm())}

    def hessian_operator(self, sample_images: torch.Tensor, sample_targets: torch.Tensor,
                         damping: float, curvature: str = "hessian",
                         on_product: Callable[[], None] | None = None,
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> (mean curvature of l over the sample + (weight_decay + damping) I) v, where the
        curvature is the Hessian or its Gauss-Newton part (see CURVATURES)."""
        if sample_images.shape[0] == 0:
            raise InvalidArgument("the Hessian sample is empty")
        if curvature not in CURVATURES:
            raise InvalidArgument(f"curvature must be one of {', '.join(CURVATURES)}, got {quoted(curvature)}")
        features = self._features(sample_images)
        count = features.shape[0]
        chunks = [_CurvatureChunk(self._suffix, self._params, features[i:i + self._batch_size],
                                  sample_targets[i:i + self._batch_size], self._loss, curvature)
                  for i in range(0, count, self._batch_size)]
        ridge = self._weight_decay + damping

        def apply(vector: torch.Tensor) -> torch.Tensor:
            if on_product is not None:
                on_product()
            tangents = list(self._unflatten(vector).values())
            total = ridge * vector
            for chunk in chunks:
                total = total + torch.cat([t.reshape(-1) for t in chunk.product(tangents)]) / count
            return total

        return apply

    def first_order(self, originals: torch.Tensor, replacements: torch.Tensor,
                    targets: torch.Tensor, params: UnlearnParams) -> UpdateResult:
        stopwatch = Stopwatch()
        delta, norms = self._delta(originals, replacements, targets)
        if not bool(torch.isfinite(delta).all()):
            raise Aborted("the gradient difference is not finite (NaN or Inf); the update was not applied")
        return self._apply(params.tau * delta, params, norms).timed(stopwatch)

    def second_order(self, originals: torch.Tensor, replacements: torch.Tensor,
                     targets: torch.Tensor, sample_images: torch.Tensor,
                     sample_targets: torch.Tensor, params: UnlearnParams,
                     progress: ProgressFn | None = None) -> UpdateResult:
        stopwatch = Stopwatch()
        delta, norms = self._delta(originals, replacements, targets)
        rhs = delta / self._train_size
        products = 0

        def report_product() -> None:
            nonlocal products
            products += 1
            if progress is not None:
                progress("solve", min(products, params.max_iterations), params.max_iterations)

        operator = self.hessian_operator(sample_images, sample_targets, params.damping,
                                         params.curvature, report_product)
        solve: SolveResult
        if params.solver == "cg":
            solve = conjugate_gradient(operator, rhs, max_iterations=params.max_iterations,
                                       tolerance=params.tolerance)
        else:
            solve = lissa(operator, rhs, scale=params.scale, max_iterations=params.max_iterations,
                          tolerance=params.tolerance)
        stats = {**norms, "solver": params.solver,
                 "solver_iterations": solve.iterations,
                 "solver_relative_residual": solve.relative_residual,
                 "solver_converged": solve.converged, "hessian_vector_products": products,
                 "hessian_samples": int(sample_images.shape[0])}
        return self._apply(solve.x, params, stats).timed(stopwatch)

    def _apply(self, step: torch.Tensor, params: UnlearnParams, stats: dict) -> UpdateResult:
        theta = _flatten(self._params)
        step_norm, theta_norm = float(step.norm()), float(theta.norm())
        if not math.isfinite(step_norm):
            raise Aborted("the update is not finite (NaN or Inf); the update was not applied")
        if step_norm > params.max_update_ratio * theta_norm:
            raise Aborted(f"the update's norm {step_norm:.3g} exceeds max_update_ratio="
                          f"{params.max_update_ratio} times the parameters' norm {theta_norm:.3g}; "
                          "raise the damping or lower tau")
        updated = self._unflatten(theta - step)
        state = {name: tensor.detach().clone() for name, tensor in self._model.state_dict().items()}
        for name, tensor in updated.items():
            state[name] = tensor.clone()
        stats = {**stats, "update_norm": step_norm, "parameter_norm": theta_norm,
                 "updated_parameters": int(step.numel())}
        return UpdateResult(state_dict=state, stats=stats)
