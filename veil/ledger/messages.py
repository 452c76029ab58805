"""The ledger's reading of veil.v1 messages: mechanism enums, and what releasing the image of a
Receipt charges. Torch-free, so the gateway charges candidates without loading the model code
(veil.diffusion.messages builds the receipts and uses the same enums)."""

from __future__ import annotations

from veil.errors import InvalidArgument
from veil.ledger.events import AttributeSpend, IdentitySpend, Mechanism, ReleaseSpend
from veil.v1 import common_pb2

MECHANISM_TO_PROTO = {
    Mechanism.RANDOMIZED_RESPONSE: common_pb2.MECHANISM_RANDOMIZED_RESPONSE,
    Mechanism.LAPLACE: common_pb2.MECHANISM_LAPLACE,
    Mechanism.GAUSSIAN: common_pb2.MECHANISM_GAUSSIAN,
}
MECHANISM_FROM_PROTO = {value: key for key, value in MECHANISM_TO_PROTO.items()}


def mechanism_from_proto(value: int, what: str) -> Mechanism:
    try:
        return MECHANISM_FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(f"{what}: unknown mechanism {value}") from None


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
