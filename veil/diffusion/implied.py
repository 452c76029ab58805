"""Attributes that must be protected together (DESIGN section 7).

When a value of attribute B almost determines a protected attribute K (a beard occurs only on
men: No_Beard = -1 implies Male = +1), releasing B unchanged would leak K. Such a B is protected
with K: it is re-drawn from its training-set distribution given the RELEASED value of K. That
draw depends only on the released value and fresh randomness, so it is post-processing and
costs no privacy budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_SUPPORT = 0.03
"""A value of B must occur at least this often to count as evidence."""

IMPLIES_AT = 0.95
"""P(K = k | B = v) at or above this makes B implied by K."""


def attribute_statistics(attributes: np.ndarray, names: list[str]) -> dict[str, Any]:
    """`implied` (key -> attributes protected with it) and `conditional_rates`
    (key -> released value "+1"/"-1" -> attribute -> P(attribute = +1 | key = value))."""
    values = np.asarray(attributes) > 0
    implied: dict[str, list[str]] = {}
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for k, key in enumerate(names):
        group = []
        for b, other in enumerate(names):
            if b == k:
                continue
            for v in (True, False):
                rows = values[:, b] == v
                if rows.mean() < MIN_SUPPORT:
                    continue
                share = values[rows, k].mean()
                if max(share, 1 - share) >= IMPLIES_AT:
                    group.append(other)
                    break
        if group:
            implied[key] = group
            rates[key] = {
                label: {other: float(values[values[:, k] == v, names.index(other)].mean()) for other in group}
                for label, v in (("+1", True), ("-1", False))
                if (values[:, k] == v).any()
            }
    return {"implied": implied, "conditional_rates": rates}
