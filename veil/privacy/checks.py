"""The checks every privacy value passes, wherever it enters (a request, a stored row, a CLI flag).

Each returns the value normalised or raises InvalidArgument naming what was wrong. eps must be
finite, > 0 and at most MAX_EPSILON: 0, negative, NaN or infinite budgets are refused, never
charged (a negative charge would raise the remaining budget), and larger ones would only buy
unbounded calibration work (veil.privacy.limits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from veil.errors import InvalidArgument, quoted
from veil.privacy.limits import MAX_EPSILON


def require_epsilon(value: Any, what: str) -> float:
    """`value` as a float if it is a number in (0, MAX_EPSILON], else InvalidArgument naming `what`."""
    try:
        eps = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: epsilon must be a number, got {quoted(value)}") from None
    if not math.isfinite(eps) or eps <= 0:
        raise InvalidArgument(f"{what}: epsilon must be finite and > 0, got {quoted(value)}")
    if eps > MAX_EPSILON:
        raise InvalidArgument(f"{what}: epsilon must be at most {MAX_EPSILON:g}, got {quoted(value)}")
    return eps


def require_delta(value: Any, what: str) -> float:
    try:
        delta = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: delta must be a number, got {quoted(value)}") from None
    if not 0 < delta < 1:
        raise InvalidArgument(f"{what}: delta must be in (0, 1), got {quoted(value)}")
    return delta


def require_rho(value: Any) -> float:
    """The fraction of x_T re-drawn, in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"rho must be in [0, 1], got {quoted(value)}")
    return float(value)


def require_attributes(protect: Iterable[str], known: Sequence[str], model: str = "") -> tuple[str, ...]:
    """`protect` as a tuple if it names distinct attributes of a model that knows `known`."""
    protect = tuple(protect)
    unknown = [a for a in protect if a not in known]
    if unknown:
        this_model = f"this model ({model})" if model else "this model"
        raise InvalidArgument(f"unknown attribute(s) {', '.join(map(repr, unknown))}; "
                              f"{this_model} knows {', '.join(known)}")
    if len(set(protect)) != len(protect):
        raise InvalidArgument(f"an attribute is listed twice in {list(protect)}")
    return protect
