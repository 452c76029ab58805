"""Privacy-ledger accounting: DP events of a release and their composition (DESIGN section 6).

Plain Python on dp-accounting; the SQL ledger that charges subjects is veil.sessions.ledger_store.
"""

from veil.ledger.accountant import BudgetExceeded, Composition, LedgerConfig, ReplaceOneAccountant, compose
from veil.ledger.events import (
    IDENTITY,
    AttributeSpend,
    IdentitySpend,
    LedgerEvent,
    Mechanism,
    ReleaseSpend,
    calibrate_gaussian_noise_multiplier,
    events_from_json,
    events_to_json,
    randomized_response_noise_parameter,
    require_epsilon,
)

__all__ = [
    "IDENTITY", "AttributeSpend", "BudgetExceeded", "Composition", "IdentitySpend", "LedgerConfig", "LedgerEvent",
    "Mechanism", "ReleaseSpend", "ReplaceOneAccountant", "calibrate_gaussian_noise_multiplier",
    "compose", "events_from_json", "events_to_json", "randomized_response_noise_parameter",
    "require_epsilon",
]
