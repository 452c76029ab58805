"""Diffusion-DP values <-> veil.v1 messages: receipts both ways."""

from __future__ import annotations

import pytest

from veil.diffusion.anonymize import AttributeRelease, Receipt
from veil.diffusion.convert import receipt_from_proto, receipt_to_proto


@pytest.mark.parametrize("identity", [True, False])
def test_receipts_round_trip(identity: bool) -> None:
    receipt = Receipt(
        receipt_id="r1", attributes=(AttributeRelease("Male", "randomized_response", 1.0, -1.0),
                                     AttributeRelease("Young", "laplace", 0.5, 0.25)),
        resampled=("No_Beard",), identity_epsilon=8.0 if identity else None,
        identity_delta=1e-5 if identity else None, identity_sigma=3.2 if identity else None,
        identity_noise_multiplier=0.8 if identity else None, rho=0.3, level=-1, seed=2**62, candidate=2,
        model_version="v", input_sha256="ab" * 32, created_at=1700000000.123456,
        image_level_guarantee=identity, decode_tries=3 if identity else 1)
    back = receipt_from_proto(receipt_to_proto(receipt))
    assert back == receipt
    assert back.spend() == receipt.spend()
