"""A new session's protected attributes and first-round settings: the request's PrivacySetting
resolved once, by veil.privacy (the same code the anonymizer uses), then held to the gateway's
rules: the attributes and mechanisms of the model the anonymizer serves, and the controller's
bounds. Every later round sends the anonymizer explicit values (veil.privacy.convert).

- No privacy setting: the default level.
- A level 1..10: that row of the table for every protected attribute (randomized response),
  identity at the row's eps (none: identity not protected) and rho.
- Level 0 is refused: it releases the image's own attributes unprotected, spends nothing and is
  not a DP release, so it cannot be a session's release.
- Explicit budgets: eps per protected attribute (an attribute not named takes the level's eps
  when a level 1..10 is also given), the attribute mechanism (randomized response or Laplace),
  identity eps (0: not protected) and rho. Every eps must be finite, > 0 and within
  [VEIL_EPS_MIN, VEIL_EPS_MAX], the same rule as SET_EPSILON.
"""

from __future__ import annotations

from collections.abc import Sequence

from veil.errors import InvalidArgument
from veil.privacy import MAX_CANDIDATES, PrivacySettings, require_attributes
from veil.privacy.convert import mechanism_to_proto, settings_from_proto
from services.gateway.state import ControllerConfig, validate_budget
from veil.v1 import anonymizer_pb2, common_pb2

DEFAULT_CANDIDATES = 4


def protected_attributes(names: Sequence[str], info: anonymizer_pb2.ModelInfo) -> tuple[str, ...]:
    known = [a.name for a in info.attributes]
    if not names:
        raise InvalidArgument(f"protect names no attribute; this model knows {', '.join(known)}")
    return require_attributes(names, known, info.model_version)


def candidates_per_round(requested: int, info: anonymizer_pb2.ModelInfo) -> int:
    limit = min(MAX_CANDIDATES, info.max_candidates or MAX_CANDIDATES)
    count = requested or min(DEFAULT_CANDIDATES, limit)
    if not 1 <= count <= limit:
        raise InvalidArgument(f"candidates must be in 1..{limit}, got {requested}")
    return count


def initial_settings(privacy: common_pb2.PrivacySetting | None, protect: Sequence[str],
                     info: anonymizer_pb2.ModelInfo, bounds: ControllerConfig) -> PrivacySettings:
    """The first round's settings (see the module docstring)."""
    settings = settings_from_proto(privacy, protect, [a.name for a in info.attributes])
    if settings.reconstructs:
        raise InvalidArgument("privacy level 0 releases the image unprotected: it spends no budget "
                              "and is not a DP release, so a session cannot use it; choose a level "
                              "1..10 or explicit eps")
    if privacy is not None and privacy.HasField("explicit"):
        budget = settings.budget()
        validate_budget(budget, budget, bounds)
    offered = {a.name: set(a.mechanisms) for a in info.attributes}
    value = mechanism_to_proto(settings.mechanism)
    refused = [a for a in protect if offered[a] and value not in offered[a]]
    if refused:
        raise InvalidArgument(f"attribute(s) {', '.join(refused)} cannot be released by "
                              f"{settings.mechanism.value}")
    return settings
