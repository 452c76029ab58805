"""A new session's protected attributes and first-round settings, checked against the model the
anonymizer serves (its attributes, mechanisms and level table) and the controller's bounds.

- No privacy setting: the model's default level.
- A level 1..10: that row of the table for every protected attribute (RANDOMIZED_RESPONSE),
  identity at the row's eps (0: identity not protected) and rho.
- Level 0 is refused: it releases the image's own attributes unprotected, spends nothing and is
  not a DP release, so it cannot be a session's release.
- Explicit budgets: eps per protected attribute (an attribute not named takes the level's eps
  when a level 1..10 is also given), the attribute mechanism (randomized response or Laplace),
  identity eps (0: not protected) and rho. Every eps must be finite, > 0 and within
  [VEIL_EPS_MIN, VEIL_EPS_MAX], the same rule as SET_EPSILON.
"""

from __future__ import annotations

from collections.abc import Sequence

from veil.errors import InvalidArgument, quoted
from veil.ledger import IDENTITY, Mechanism
from veil.ledger.messages import MECHANISM_FROM_PROTO
from veil.sessions import ControllerConfig, PrivacySettings, validate_budget
from veil.v1 import anonymizer_pb2, common_pb2

DEFAULT_CANDIDATES = 4
MAX_CANDIDATES = 8


def protected_attributes(names: Sequence[str], info: anonymizer_pb2.ModelInfo) -> tuple[str, ...]:
    known = [a.name for a in info.attributes]
    if not names:
        raise InvalidArgument(f"protect names no attribute; this model knows {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidArgument(f"unknown attribute(s) {', '.join(map(repr, unknown))}; this model "
                              f"({info.model_version}) knows {', '.join(known)}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"an attribute is listed twice in protect {list(names)}")
    return tuple(names)


def candidates_per_round(requested: int, info: anonymizer_pb2.ModelInfo) -> int:
    limit = min(MAX_CANDIDATES, info.max_candidates or MAX_CANDIDATES)
    count = requested or min(DEFAULT_CANDIDATES, limit)
    if not 1 <= count <= limit:
        raise InvalidArgument(f"candidates must be in 1..{limit}, got {requested}")
    return count


def _level_row(level: int, info: anonymizer_pb2.ModelInfo) -> anonymizer_pb2.PrivacyLevel:
    if level == 0:
        raise InvalidArgument("privacy level 0 releases the image unprotected: it spends no budget "
                              "and is not a DP release, so a session cannot use it; choose a level "
                              "1..10 or explicit eps")
    rows = {row.level: row for row in info.levels}
    if level not in rows:
        raise InvalidArgument(f"privacy level must be in 1..{max(rows, default=10)}, got {level}")
    row = rows[level]
    if row.attribute_epsilon <= 0:
        raise InvalidArgument(f"privacy level {level} protects no attribute")
    return row


def initial_settings(privacy: common_pb2.PrivacySetting | None, protect: Sequence[str],
                     info: anonymizer_pb2.ModelInfo, bounds: ControllerConfig) -> PrivacySettings:
    """The first round's settings (see the module docstring)."""
    if privacy is None:
        privacy = common_pb2.PrivacySetting(level=info.default_level)
    if not privacy.HasField("explicit"):
        row = _level_row(privacy.level, info)
        return PrivacySettings(attribute_epsilon={a: row.attribute_epsilon for a in protect},
                               identity_epsilon=row.identity_epsilon, rho=row.rho,
                               level=privacy.level)
    explicit = privacy.explicit
    row = _level_row(privacy.level, info) if privacy.level else None
    extra = sorted(set(explicit.attribute_epsilon) - set(protect))
    if extra:
        raise InvalidArgument(f"epsilon given for attribute(s) not protected: {', '.join(extra)}")
    requested: dict[str, float] = {}
    for attribute in protect:
        if attribute in explicit.attribute_epsilon:
            requested[attribute] = explicit.attribute_epsilon[attribute]
        elif row is not None:
            requested[attribute] = row.attribute_epsilon
        else:
            raise InvalidArgument(f"no epsilon for protected attribute {quoted(attribute)}; give one, or "
                                  f"a level 1..10 whose eps it takes")
    if explicit.identity_epsilon != 0:
        requested[IDENTITY] = explicit.identity_epsilon
    budget = validate_budget(requested, dict.fromkeys(requested, 1.0), bounds)
    mechanism = _attribute_mechanism(explicit.attribute_mechanism, protect, info)
    return PrivacySettings(attribute_epsilon={a: budget[a] for a in protect},
                           identity_epsilon=budget.get(IDENTITY, 0.0), rho=explicit.rho, level=-1,
                           mechanism=mechanism)


def _attribute_mechanism(value: int, protect: Sequence[str],
                         info: anonymizer_pb2.ModelInfo) -> Mechanism:
    if value == common_pb2.MECHANISM_UNSPECIFIED:
        value = common_pb2.MECHANISM_RANDOMIZED_RESPONSE
    mechanism = MECHANISM_FROM_PROTO.get(value)
    if mechanism is None or mechanism is Mechanism.GAUSSIAN:
        raise InvalidArgument("attributes are released by randomized response or Laplace; the "
                              "Gaussian mechanism is for identity")
    offered = {a.name: set(a.mechanisms) for a in info.attributes}
    refused = [a for a in protect if offered[a] and value not in offered[a]]
    if refused:
        raise InvalidArgument(f"attribute(s) {', '.join(refused)} cannot be released by "
                              f"{mechanism.value}")
    return mechanism
