"""PrivacySettings: what one release (an anonymizer request, a session's round) spends.

eps per protected attribute (released through one attribute mechanism), eps of the identity
mechanism (None: identity not protected), the fraction rho of x_T re-drawn, and the level of the
table (veil.privacy.levels) the values are, or -1 when they were chosen explicitly (by a caller,
the feedback controller or the owner). Validated once, when constructed; a level becomes values
only in `from_level`.

In JSON and protobuf an identity eps of 0 means "identity not protected" (see `to_json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from veil.errors import InvalidArgument, quoted
from veil.privacy.checks import require_attributes, require_epsilon, require_rho
from veil.privacy.levels import MAX_LEVEL, privacy_level
from veil.privacy.mechanisms import Mechanism, attribute_mechanism

IDENTITY = "identity"  # the budget key of the identity mechanism (never an attribute's name)


@dataclasses.dataclass(frozen=True)
class PrivacySettings:
    attribute_epsilon: Mapping[str, float]  # in protect order; empty: attributes released unchanged
    identity_epsilon: float | None = None
    rho: float = 0.0
    level: int = -1
    mechanism: Mechanism = Mechanism.RANDOMIZED_RESPONSE

    def __post_init__(self) -> None:
        eps = {str(k): require_epsilon(v, k) for k, v in dict(self.attribute_epsilon).items()}
        if IDENTITY in eps:
            raise InvalidArgument(f"{quoted(IDENTITY)} is not an attribute; use identity_epsilon")
        object.__setattr__(self, "attribute_epsilon", eps)
        if self.identity_epsilon is not None:
            object.__setattr__(self, "identity_epsilon", require_epsilon(self.identity_epsilon, IDENTITY))
        object.__setattr__(self, "rho", require_rho(self.rho))
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not -1 <= self.level <= MAX_LEVEL:
            raise InvalidArgument(f"level must be in 0..{MAX_LEVEL} (or -1: explicit), got {quoted(self.level)}")
        object.__setattr__(self, "mechanism", attribute_mechanism(self.mechanism, "attribute mechanism"))

    @classmethod
    def from_level(cls, level: int, protect: Sequence[str], known: Sequence[str]) -> PrivacySettings:
        """The row `level` of the table for `protect` (attributes of a model that knows `known`)."""
        row = privacy_level(level)
        names = require_attributes(protect, known)
        eps = {} if row.attribute_epsilon is None else dict.fromkeys(names, row.attribute_epsilon)
        return cls(eps, row.identity_epsilon, row.rho, row.level)

    @classmethod
    def explicit(cls, protect: Sequence[str], known: Sequence[str], attribute_epsilon: Mapping[str, float],
                 mechanism: Mechanism | str = Mechanism.RANDOMIZED_RESPONSE,
                 identity_epsilon: float | None = None, rho: float = 0.0) -> PrivacySettings:
        """Chosen values: an eps for every attribute of `protect` and for no other."""
        names = require_attributes(protect, known)
        missing = [a for a in names if a not in attribute_epsilon]
        extra = [a for a in attribute_epsilon if a not in names]
        if missing:
            raise InvalidArgument(f"no epsilon given for protected attribute(s) {', '.join(missing)}")
        if extra:
            raise InvalidArgument(f"epsilon given for attribute(s) not protected: {', '.join(extra)}")
        return cls({a: attribute_epsilon[a] for a in names}, identity_epsilon, rho, -1, mechanism)

    @property
    def reconstructs(self) -> bool:
        """Nothing is released through a mechanism (level 0): the image is only reconstructed."""
        return not self.attribute_epsilon and self.identity_epsilon is None and self.rho == 0.0

    def budget(self) -> dict[str, float]:
        """eps per protected attribute plus "identity" when identity is protected."""
        budget = dict(self.attribute_epsilon)
        if self.identity_epsilon is not None:
            budget[IDENTITY] = self.identity_epsilon
        return budget

    def with_budget(self, budget: Mapping[str, float]) -> PrivacySettings:
        """These settings with eps replaced from `budget` (keys as in `budget()`); level -1."""
        attributes = {k: budget.get(k, v) for k, v in self.attribute_epsilon.items()}
        identity = budget.get(IDENTITY, self.identity_epsilon)
        return dataclasses.replace(self, attribute_epsilon=attributes, identity_epsilon=identity, level=-1)

    def to_json(self) -> dict[str, Any]:
        return {"attribute_epsilon": dict(self.attribute_epsilon),
                "identity_epsilon": self.identity_epsilon or 0.0, "rho": self.rho, "level": self.level,
                "mechanism": self.mechanism.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrivacySettings:
        return cls(**{**data, "identity_epsilon": data["identity_epsilon"] or None})
