"""Diffusion-DP values <-> veil.v1 messages: budgets from PrivacySetting, receipts both ways."""

from __future__ import annotations

import math

import pytest

from veil.diffusion.anonymize import AttributeRelease, Budget, Receipt
from veil.diffusion.levels import DEFAULT_LEVEL
from veil.diffusion.messages import budget_from_proto, receipt_from_proto, receipt_to_proto
from veil.errors import InvalidArgument
from veil.ledger import Mechanism
from veil.v1 import common_pb2

NAMES = ["Male", "Smiling", "Young"]


def explicit(level: int = 0, **fields) -> common_pb2.PrivacySetting:
    return common_pb2.PrivacySetting(level=level, explicit=common_pb2.ExplicitBudget(**fields))


def test_budgets_from_privacy_settings() -> None:
    assert budget_from_proto(None, ["Male"], NAMES) == Budget.from_level(DEFAULT_LEVEL, ["Male"], NAMES)
    assert budget_from_proto(common_pb2.PrivacySetting(level=7), ["Male"], NAMES) == Budget.from_level(7, ["Male"], NAMES)
    mixed = budget_from_proto(explicit(3, attribute_epsilon={"Male": 0.5}, attribute_mechanism=common_pb2.MECHANISM_LAPLACE,
                                       identity_epsilon=2.0, rho=0.4), ["Male", "Young"], NAMES)
    assert mixed == Budget(("Male", "Young"), {"Male": 0.5, "Young": 4.0}, Mechanism.LAPLACE, 2.0, 0.4, -1)
    assert budget_from_proto(explicit(attribute_epsilon={"Male": 1.0}), ["Male"], NAMES).identity_epsilon is None


@pytest.mark.parametrize("setting, message", [
    (explicit(attribute_epsilon={"Male": 1.0}), "no epsilon given for protected attribute(s) Young"),
    (explicit(attribute_epsilon={"Male": 1.0, "Young": 1.0, "Smiling": 1.0}), "not protected: Smiling"),
    (explicit(attribute_epsilon={"Male": math.nan, "Young": 1.0}), "Male: epsilon must be finite and > 0"),
    (explicit(attribute_epsilon={"Male": 1.0, "Young": 1.0}, identity_epsilon=-2.0), "identity: epsilon"),
    (explicit(attribute_epsilon={"Male": 1.0, "Young": 1.0}, rho=1.5), "rho must be in [0, 1]"),
    (explicit(attribute_epsilon={"Male": 1.0, "Young": 1.0}, attribute_mechanism=common_pb2.MECHANISM_GAUSSIAN), "identity"),
    (explicit(attribute_epsilon={"Male": 1.0, "Young": 1.0}, attribute_mechanism=99), "unknown mechanism 99"),
    (explicit(11, attribute_epsilon={"Male": 1.0, "Young": 1.0}), "privacy level"),
    (common_pb2.PrivacySetting(level=-1), "privacy level"),
])
def test_invalid_privacy_settings(setting: common_pb2.PrivacySetting, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        budget_from_proto(setting, ["Male", "Young"], NAMES)
    assert message in str(err.value)


@pytest.mark.parametrize("identity", [True, False])
def test_receipts_round_trip(identity: bool) -> None:
    receipt = Receipt(
        receipt_id="r1", attributes=(AttributeRelease("Male", "randomized_response", 1.0, -1.0),
                                     AttributeRelease("Young", "laplace", 0.5, 0.25)),
        resampled=("No_Beard",), identity_epsilon=8.0 if identity else None,
        identity_delta=1e-5 if identity else None, identity_sigma=3.2 if identity else None,
        identity_noise_multiplier=0.8 if identity else None, rho=0.3, level=-1, seed=2**62, candidate=2,
        model_version="v", input_sha256="ab" * 32, created_at=1700000000.123456)
    back = receipt_from_proto(receipt_to_proto(receipt))
    assert back == receipt
    assert back.spend() == receipt.spend()
