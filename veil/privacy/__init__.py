"""The privacy vocabulary shared by the gateway and the anonymizer (DESIGN sections 4, 6, 10).

Torch-free (the gateway imports it without the model code):

- levels: the table from a level 0..10 to (eps per attribute, identity eps, rho).
- settings: `PrivacySettings`, what one release spends; a level becomes values only there.
- mechanisms: the registry of DP mechanisms (name, proto value, release function, bounds, the
  dp-accounting event the ledger composes), read by the anonymizer and the ledger alike.
- checks: the validation of eps, delta, rho and protected attributes.
- limits: MAX_CANDIDATES, MAX_EPSILON and MAX_SEED.
- convert: the above <-> the veil.v1 messages.
"""

from veil.privacy.checks import require_attributes, require_delta, require_epsilon, require_rho
from veil.privacy.levels import DEFAULT_LEVEL, IDENTITY_DELTA, LEVELS, MAX_LEVEL, PrivacyLevel, privacy_level
from veil.privacy.limits import MAX_CANDIDATES, MAX_EPSILON, MAX_SEED, require_candidates, require_seed
from veil.privacy.mechanisms import (ATTRIBUTE_MECHANISMS, IDENTITY_MECHANISM, MECHANISMS, Mechanism, MechanismSpec,
                                     Target, attribute_mechanism, mechanism_spec)
from veil.privacy.settings import IDENTITY, PrivacySettings

__all__ = [
    "ATTRIBUTE_MECHANISMS", "DEFAULT_LEVEL", "IDENTITY", "IDENTITY_DELTA", "IDENTITY_MECHANISM", "LEVELS",
    "MAX_CANDIDATES", "MAX_EPSILON", "MAX_LEVEL", "MAX_SEED", "MECHANISMS", "Mechanism", "MechanismSpec", "PrivacyLevel",
    "PrivacySettings", "Target", "attribute_mechanism", "mechanism_spec", "privacy_level", "require_attributes",
    "require_candidates", "require_delta", "require_epsilon", "require_rho", "require_seed",
]
