"""Iterative solvers for A x = b where A is only available as a matrix-vector product.

A is the (damped) Hessian of the training objective, applied through Hessian-vector products, so
the solvers never see a matrix. Both stop early on a relative residual and raise Aborted instead of
returning a solution they cannot vouch for: a non-finite value, negative curvature (conjugate
gradient needs a positive definite A) or a growing iterate (LiSSA needs scale > largest eigenvalue).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from veil.errors import Aborted

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolveResult:
    x: torch.Tensor
    iterations: int
    # ||A x - b|| / ||b|| at the returned x (conjugate gradient: its recursive residual).
    relative_residual: float
    converged: bool


def _check_finite(value: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(value).all()):
        raise Aborted(f"{what} is not finite (NaN or Inf); the update was not applied")


def conjugate_gradient(apply_a: MatVec, b: torch.Tensor, *, max_iterations: int,
                       tolerance: float) -> SolveResult:
    """Solve A x = b for symmetric positive definite A, starting from x = 0."""
    _check_finite(b, "the gradient difference")
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    b_norm = math.sqrt(float(rs))
    if b_norm == 0.0:
        return SolveResult(x, 0, 0.0, True)
    residual = 1.0
    for iteration in range(1, max_iterations + 1):
        ap = apply_a(p)
        _check_finite(ap, "a Hessian-vector product")
        curvature = float(torch.dot(p, ap))
        if curvature <= 0.0:
            raise Aborted(
                f"conjugate gradient met non-positive curvature ({curvature:.3g}) at iteration "
                f"{iteration}: the damped Hessian is not positive definite; raise the damping or "
                "restrict the update to the last layers")
        alpha = float(rs) / curvature
        x.add_(p, alpha=alpha)
        r.sub_(ap, alpha=alpha)
        rs_next = torch.dot(r, r)
        _check_finite(rs_next, "the conjugate gradient residual")
        residual = math.sqrt(float(rs_next)) / b_norm
        if residual <= tolerance:
            return SolveResult(x, iteration, residual, True)
        p.mul_(float(rs_next) / float(rs)).add_(r)
        rs = rs_next
    return SolveResult(x, max_iterations, residual, False)


def lissa(apply_a: MatVec, b: torch.Tensor, *, scale: float, max_iterations: int,
          tolerance: float) -> SolveResult:
    """Solve A x = b by the LiSSA series x = (1/scale) * sum_j (I - A/scale)^j b.

    Converges when every eigenvalue of A lies in (0, 2*scale); stops early once an iteration
    changes the estimate by less than `tolerance` (relative), then measures the true residual.
    """
    _check_finite(b, "the gradient difference")
    b_norm = float(torch.linalg.vector_norm(b))
    if b_norm == 0.0:
        return SolveResult(torch.zeros_like(b), 0, 0.0, True)
    h = b.clone()
    iterations, change = 0, math.inf
    for iterations in range(1, max_iterations + 1):
        h_next = b + h - apply_a(h) / scale
        _check_finite(h_next, "the LiSSA estimate")
        h_norm = float(torch.linalg.vector_norm(h_next))
        # With every eigenvalue of I - A/scale inside [-1, 1] the partial sums grow at most
        # linearly, ||h_j|| <= (j + 1) ||b||; faster growth means the series diverges.
        if h_norm > 2.0 * (iterations + 1) * b_norm:
            raise Aborted(
                f"LiSSA diverged at iteration {iterations} (|h| = {h_norm:.3g}, |b| = {b_norm:.3g}): "
                "the scale must exceed the largest eigenvalue of the damped Hessian")
        change = float(torch.linalg.vector_norm(h_next - h)) / max(h_norm, 1e-30)
        h = h_next
        if change <= tolerance:
            break
    x = h / scale
    residual_vector = apply_a(x) - b
    _check_finite(residual_vector, "a Hessian-vector product")
    residual = float(torch.linalg.vector_norm(residual_vector)) / b_norm
    if residual > 1.0:
        raise Aborted(f"LiSSA did not converge: relative residual {residual:.3g} after {iterations} "
                      "iterations is worse than no update; raise max_iterations or the damping")
    return SolveResult(x, iterations, residual, change <= tolerance)
