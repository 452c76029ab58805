"""PrivacySettings, mechanisms and the level table <-> the veil.v1 messages.

`settings_from_proto` is how both services read a PrivacySetting: a bare level (the anonymizer's
direct callers; the gateway's CreateSession), explicit values, or explicit values with a level
that fills the eps of protected attributes they do not name. `settings_to_proto` is what the
gateway sends the anonymizer: the values it resolved, never a bare level to resolve again. Values
that are exactly the row of the level sent beside them keep that level (the receipt says so);
any other explicit values are level -1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from veil.errors import InvalidArgument
from veil.privacy.guarantee import level_guarantee
from veil.privacy.levels import DEFAULT_LEVEL, LEVELS, privacy_level
from veil.privacy.mechanisms import MECHANISMS, Mechanism
from veil.privacy.settings import PrivacySettings
from veil.v1 import anonymizer_pb2, common_pb2

MECHANISM_FROM_PROTO = {spec.proto: mechanism for mechanism, spec in MECHANISMS.items()}


def mechanism_to_proto(mechanism: Mechanism | str) -> int:
    return MECHANISMS[Mechanism(mechanism)].proto


def mechanism_from_proto(value: int, what: str) -> Mechanism:
    try:
        return MECHANISM_FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(f"{what}: unknown mechanism {value}") from None


def settings_from_proto(privacy: common_pb2.PrivacySetting | None, protect: Sequence[str],
                        known: Sequence[str]) -> PrivacySettings:
    """The settings a PrivacySetting asks for (None: DEFAULT_LEVEL) for `protect`, attributes of
    a model that knows `known`; InvalidArgument when invalid."""
    if privacy is None:
        return PrivacySettings.from_level(DEFAULT_LEVEL, protect, known)
    if not privacy.HasField("explicit"):
        return PrivacySettings.from_level(privacy.level, protect, known)
    explicit = privacy.explicit
    eps = dict(explicit.attribute_epsilon)
    fallback = privacy_level(privacy.level).attribute_epsilon
    if fallback is not None:
        eps.update({name: fallback for name in protect if name not in eps})
    mechanism = (Mechanism.RANDOMIZED_RESPONSE if explicit.attribute_mechanism == common_pb2.MECHANISM_UNSPECIFIED
                 else mechanism_from_proto(explicit.attribute_mechanism, "attribute_mechanism"))
    identity = None if explicit.identity_epsilon == 0 else explicit.identity_epsilon
    settings = PrivacySettings.explicit(protect, known, eps, mechanism, identity, explicit.rho)
    if privacy.level:
        row = PrivacySettings.from_level(privacy.level, protect, known)
        if dataclasses.replace(row, level=-1) == settings:
            return row
    return settings


def settings_to_proto(settings: PrivacySettings) -> common_pb2.PrivacySetting:
    """Every value explicitly, with the level they are (if any) so the receipt records it."""
    return common_pb2.PrivacySetting(level=max(settings.level, 0), explicit=common_pb2.ExplicitBudget(
        attribute_epsilon=dict(settings.attribute_epsilon), attribute_mechanism=mechanism_to_proto(settings.mechanism),
        identity_epsilon=settings.identity_epsilon or 0.0, rho=settings.rho))


def levels_to_proto(guidance_base: str) -> list[anonymizer_pb2.PrivacyLevel]:
    """The level table as served by a model that guides against `guidance_base`."""
    return [anonymizer_pb2.PrivacyLevel(level=row.level, attribute_epsilon=row.attribute_epsilon or 0.0,
                                        identity_epsilon=row.identity_epsilon or 0.0, rho=row.rho,
                                        image_level_guarantee=level_guarantee(row, guidance_base))
            for row in LEVELS]
