"""Conversions between Diffusion-DP values and the veil.v1 messages (the only place that does it).

The anonymizer uses them to serve. The gateway charges a candidate's receipt with the torch-free
veil.ledger.messages.receipt_spend (which also holds the mechanism enums used here).
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from veil.diffusion.anonymize import MAX_CANDIDATES, AttributeRelease, Budget, Receipt
from veil.diffusion.levels import DEFAULT_LEVEL, IDENTITY_DELTA, LEVELS, privacy_level
from veil.diffusion.pipeline import DiffusionModelCard
from veil.ledger import Mechanism
from veil.ledger.messages import MECHANISM_TO_PROTO, mechanism_from_proto
from veil.v1 import anonymizer_pb2, common_pb2

ATTRIBUTE_MECHANISMS = (Mechanism.RANDOMIZED_RESPONSE, Mechanism.LAPLACE)


def budget_from_proto(privacy: common_pb2.PrivacySetting | None, protect: Sequence[str],
                      attribute_names: Sequence[str]) -> Budget:
    """The Budget a PrivacySetting asks for (None: the default level); InvalidArgument when invalid."""
    if privacy is None:
        return Budget.from_level(DEFAULT_LEVEL, protect, attribute_names)
    if not privacy.HasField("explicit"):
        return Budget.from_level(privacy.level, protect, attribute_names)
    explicit = privacy.explicit
    eps = dict(explicit.attribute_epsilon)
    fallback = privacy_level(privacy.level).attribute_epsilon
    if fallback is not None:
        eps.update({name: fallback for name in protect if name not in eps})
    mechanism = (Mechanism.RANDOMIZED_RESPONSE if explicit.attribute_mechanism == common_pb2.MECHANISM_UNSPECIFIED
                 else mechanism_from_proto(explicit.attribute_mechanism, "attribute_mechanism"))
    identity = None if explicit.identity_epsilon == 0 else explicit.identity_epsilon
    return Budget.explicit(protect, attribute_names, eps, mechanism, identity, explicit.rho)


def receipt_to_proto(receipt: Receipt) -> common_pb2.Receipt:
    created = Timestamp()
    created.FromNanoseconds(round(receipt.created_at * 1e9))
    return common_pb2.Receipt(
        receipt_id=receipt.receipt_id,
        attributes=[common_pb2.AttributeRelease(attribute=a.attribute, mechanism=MECHANISM_TO_PROTO[Mechanism(a.mechanism)],
                                                epsilon=a.epsilon, released_value=a.released_value)
                    for a in receipt.attributes],
        identity_epsilon=receipt.identity_epsilon or 0.0,
        identity_delta=receipt.identity_delta or 0.0,
        identity_sigma=receipt.identity_sigma or 0.0,
        identity_noise_multiplier=receipt.identity_noise_multiplier or 0.0,
        rho=receipt.rho, level=receipt.level, seed=receipt.seed, model_version=receipt.model_version,
        input_sha256=receipt.input_sha256, created_at=created,
        resampled_attributes=receipt.resampled, candidate=receipt.candidate,
    )


def receipt_from_proto(message: common_pb2.Receipt) -> Receipt:
    """The library Receipt of a message (0 in an identity field: identity not protected)."""
    identity = message.identity_epsilon > 0
    return Receipt(
        receipt_id=message.receipt_id,
        attributes=tuple(AttributeRelease(a.attribute, mechanism_from_proto(a.mechanism, a.attribute).value,
                                          a.epsilon, a.released_value) for a in message.attributes),
        resampled=tuple(message.resampled_attributes),
        identity_epsilon=message.identity_epsilon if identity else None,
        identity_delta=message.identity_delta if identity else None,
        identity_sigma=message.identity_sigma if identity else None,
        identity_noise_multiplier=message.identity_noise_multiplier if identity else None,
        rho=message.rho, level=message.level, seed=message.seed, candidate=message.candidate,
        model_version=message.model_version, input_sha256=message.input_sha256,
        created_at=message.created_at.ToNanoseconds() / 1e9,
    )


def model_info_to_proto(card: DiffusionModelCard, *, sampling_steps: int, runtime: str, device: str,
                        max_images_per_request: int, max_image_bytes: int) -> anonymizer_pb2.ModelInfo:
    return anonymizer_pb2.ModelInfo(
        model_version=card.model_version,
        image_size=card.image_size,
        attributes=[anonymizer_pb2.AttributeInfo(name=name, mechanisms=[MECHANISM_TO_PROTO[m] for m in ATTRIBUTE_MECHANISMS],
                                                 implied_by_protection=card.implied.get(name, []))
                    for name in card.attribute_names],
        levels=[anonymizer_pb2.PrivacyLevel(level=row.level, attribute_epsilon=row.attribute_epsilon or 0.0,
                                            identity_epsilon=row.identity_epsilon or 0.0, rho=row.rho)
                for row in LEVELS],
        default_level=DEFAULT_LEVEL,
        identity_delta=IDENTITY_DELTA,
        max_candidates=MAX_CANDIDATES,
        runtime=runtime,
        device=device,
        max_images_per_request=max_images_per_request,
        max_image_bytes=max_image_bytes,
        sampling_steps=sampling_steps,
    )
