"""Diffusion-DP values <-> the veil.v1 messages: receipts both ways and the model's description.

The anonymizer uses them to serve. Privacy settings and mechanisms convert in veil.privacy.convert;
the gateway charges a candidate's receipt with the torch-free veil.ledger.convert.receipt_spend.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from veil.diffusion.anonymize import AttributeRelease, Receipt
from veil.diffusion.pipeline import DiffusionModelCard
from veil.privacy import ATTRIBUTE_MECHANISMS, DEFAULT_LEVEL, IDENTITY_DELTA, MAX_CANDIDATES
from veil.privacy.convert import levels_to_proto, mechanism_from_proto, mechanism_to_proto
from veil.v1 import anonymizer_pb2, common_pb2


def receipt_to_proto(receipt: Receipt) -> common_pb2.Receipt:
    created = Timestamp()
    created.FromNanoseconds(round(receipt.created_at * 1e9))
    return common_pb2.Receipt(
        receipt_id=receipt.receipt_id,
        attributes=[common_pb2.AttributeRelease(attribute=a.attribute, mechanism=mechanism_to_proto(a.mechanism),
                                                epsilon=a.epsilon, released_value=a.released_value)
                    for a in receipt.attributes],
        identity_epsilon=receipt.identity_epsilon or 0.0,
        identity_delta=receipt.identity_delta or 0.0,
        identity_sigma=receipt.identity_sigma or 0.0,
        identity_noise_multiplier=receipt.identity_noise_multiplier or 0.0,
        rho=receipt.rho, level=receipt.level, seed=receipt.seed, model_version=receipt.model_version,
        input_sha256=receipt.input_sha256, created_at=created,
        resampled_attributes=receipt.resampled, candidate=receipt.candidate,
        image_level_guarantee=receipt.image_level_guarantee, decode_tries=receipt.decode_tries,
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
        image_level_guarantee=message.image_level_guarantee, decode_tries=message.decode_tries or 1,
    )


def model_info_to_proto(card: DiffusionModelCard, *, sampling_steps: int, decode_tries: int, runtime: str,
                        device: str, max_images_per_request: int, max_image_bytes: int) -> anonymizer_pb2.ModelInfo:
    return anonymizer_pb2.ModelInfo(
        model_version=card.model_version,
        image_size=card.image_size,
        attributes=[anonymizer_pb2.AttributeInfo(name=name, mechanisms=[mechanism_to_proto(m) for m in ATTRIBUTE_MECHANISMS],
                                                 implied_by_protection=card.implied.get(name, []))
                    for name in card.attribute_names],
        levels=levels_to_proto(card.sampling.guidance_base),
        default_level=DEFAULT_LEVEL,
        identity_delta=IDENTITY_DELTA,
        max_candidates=MAX_CANDIDATES,
        runtime=runtime,
        device=device,
        max_images_per_request=max_images_per_request,
        max_image_bytes=max_image_bytes,
        sampling_steps=sampling_steps,
        decode_tries=decode_tries,
    )
