"""What releasing the image of a veil.v1 Receipt charges. Torch-free, so the gateway charges
candidates without loading the model code (veil.diffusion.convert builds the receipts)."""

from __future__ import annotations

from veil.ledger.events import AttributeSpend, IdentitySpend, ReleaseSpend
from veil.privacy.convert import mechanism_from_proto
from veil.v1 import common_pb2


def receipt_spend(receipt: common_pb2.Receipt) -> ReleaseSpend:
    """Every DP event the receipt's image spends (identity_epsilon 0: identity not protected);
    InvalidArgument when the receipt spends nothing or is malformed."""
    identity = None
    if receipt.identity_epsilon > 0:
        identity = IdentitySpend(receipt.identity_epsilon, receipt.identity_delta,
                                 receipt.identity_noise_multiplier)
    attributes = tuple(AttributeSpend(a.attribute, mechanism_from_proto(a.mechanism, a.attribute),
                                      a.epsilon) for a in receipt.attributes)
    return ReleaseSpend(receipt.receipt_id, attributes, identity)
