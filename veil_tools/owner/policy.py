"""What the owner answers to one round: pure, given its attacker's readings.

Privacy: the attacker's expected accuracy on the protected attribute over the round's
candidates (its mean confidence in the original value) must be at most `privacy_target`; the
round as a whole is judged, not one candidate, since picking the candidate whose attribute
happened to flip would undo the randomized response. Utility: a candidate keeps an attribute
when the attacker reads it as on the original; the non-protected attributes (less those whose
protection comes with the protected one) must be kept at a rate of at least `utility_floor`.

Too revealing -> MORE_PRIVACY; private enough but no candidate useful -> LESS_PRIVACY;
otherwise accept the most useful candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from veil.errors import InvalidArgument, quoted


@dataclass(frozen=True)
class OwnerPolicy:
    protect: str = "Male"
    privacy_target: float = 0.65
    utility_floor: float = 0.8
    max_rounds: int = 8

    def __post_init__(self) -> None:
        if not 0.5 <= self.privacy_target <= 1 or not 0 <= self.utility_floor <= 1:
            raise InvalidArgument(f"privacy_target must be in [0.5, 1] and utility_floor in [0, 1], "
                                  f"got {self.privacy_target!r}, {self.utility_floor!r}")
        if self.max_rounds < 1:
            raise InvalidArgument(f"max_rounds must be >= 1, got {quoted(self.max_rounds)}")


@dataclass(frozen=True)
class Decision:
    answer: str  # "accept", "more" or "less" (veil.client feedback kinds)
    candidate: int  # the accepted candidate; -1 otherwise
    privacy: float  # expected attacker accuracy on the protected attribute over the round
    utility: list[float]  # per candidate: share of checked attributes kept


def decide(policy: OwnerPolicy, attributes: Sequence[str], checked: Sequence[str], protected_value: bool,
           original: np.ndarray, candidates: np.ndarray) -> Decision:
    """`original` [n_attributes] and `candidates` [k, n_attributes]: the attacker's probabilities
    (columns in `attributes` order); `checked`: the attributes utility is judged on."""
    column = attributes.index(policy.protect)
    confidence = candidates[:, column] if protected_value else 1.0 - candidates[:, column]
    privacy = float(confidence.mean())
    columns = [attributes.index(name) for name in checked]
    kept = (candidates[:, columns] > 0.5) == (original[columns] > 0.5)
    utility = [float(u) for u in kept.mean(axis=1)]
    if privacy > policy.privacy_target:
        return Decision("more", -1, privacy, utility)
    best = int(np.argmax(utility))
    if utility[best] < policy.utility_floor:
        return Decision("less", -1, privacy, utility)
    return Decision("accept", best, privacy, utility)
