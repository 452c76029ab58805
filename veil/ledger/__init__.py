"""Privacy-ledger accounting: DP events of a release and their composition (DESIGN section 6).

Plain Python on dp-accounting; the SQL ledger that charges subjects is services.gateway.state.ledger_store.
The mechanisms, eps checks and the "identity" budget key are veil.privacy's.
"""

from veil.ledger.accountant import (BudgetExceeded, Composition, LedgerConfig, ReplaceOneAccountant, admissible_epsilon,
                                   compose)
from veil.ledger.events import (
    AttributeSpend,
    IdentitySpend,
    LedgerEvent,
    ReleaseSpend,
    calibrate_gaussian_noise_multiplier,
    events_from_json,
    events_to_json,
)

__all__ = [
    "AttributeSpend", "BudgetExceeded", "Composition", "IdentitySpend", "LedgerConfig", "LedgerEvent",
    "ReleaseSpend", "ReplaceOneAccountant", "admissible_epsilon", "calibrate_gaussian_noise_multiplier", "compose",
    "events_from_json", "events_to_json",
]
