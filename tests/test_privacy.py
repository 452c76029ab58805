"""The privacy vocabulary: settings from PrivacySetting messages (a level resolved once), the
mechanism registry shared by the release and the ledger, and that none of it needs torch."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from veil.errors import InvalidArgument
from veil.ledger import AttributeSpend, compose
from veil.privacy import DEFAULT_LEVEL, MECHANISMS, Mechanism, PrivacySettings
from veil.privacy.convert import settings_from_proto, settings_to_proto
from veil.privacy.subjects import canonical_subject_id
from veil.v1 import common_pb2

NAMES = ["Male", "Smiling", "Young"]


def explicit(level: int = 0, **fields) -> common_pb2.PrivacySetting:
    return common_pb2.PrivacySetting(level=level, explicit=common_pb2.ExplicitBudget(**fields))


def test_settings_from_privacy_settings() -> None:
    assert settings_from_proto(None, ["Male"], NAMES) == PrivacySettings.from_level(DEFAULT_LEVEL, ["Male"], NAMES)
    assert (settings_from_proto(common_pb2.PrivacySetting(level=7), ["Male"], NAMES)
            == PrivacySettings.from_level(7, ["Male"], NAMES))
    mixed = settings_from_proto(explicit(3, attribute_epsilon={"Male": 0.5}, attribute_mechanism=common_pb2.MECHANISM_LAPLACE,
                                         identity_epsilon=2.0, rho=0.4), ["Male", "Young"], NAMES)
    assert mixed == PrivacySettings({"Male": 0.5, "Young": 4.0}, 2.0, 0.4, -1, Mechanism.LAPLACE)
    assert settings_from_proto(explicit(attribute_epsilon={"Male": 1.0}), ["Male"], NAMES).identity_epsilon is None


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
        settings_from_proto(setting, ["Male", "Young"], NAMES)
    assert message in str(err.value)


@pytest.mark.parametrize("level", [1, 3, 5, 10])
def test_a_resolved_level_travels_as_explicit_values_and_keeps_its_level(level: int) -> None:
    resolved = PrivacySettings.from_level(level, ["Young", "Male"], NAMES)
    message = settings_to_proto(resolved)
    assert message.HasField("explicit") and set(message.explicit.attribute_epsilon) == {"Young", "Male"}
    back = settings_from_proto(message, ["Young", "Male"], NAMES)
    assert back == resolved and back.level == level and list(back.attribute_epsilon) == ["Young", "Male"]
    # Values that are not the level's row are explicit (level -1), whatever level comes with them.
    changed = settings_to_proto(dataclasses.replace(resolved, rho=resolved.rho / 2 + 0.01))
    assert settings_from_proto(changed, ["Young", "Male"], NAMES).level == -1


def test_settings_json_keeps_identity_unprotected_as_zero() -> None:
    settings = PrivacySettings({"Male": 1.0}, None, 0.5, -1, Mechanism.LAPLACE)
    assert settings.to_json()["identity_epsilon"] == 0.0
    assert PrivacySettings.from_json(settings.to_json()) == settings
    with pytest.raises(InvalidArgument, match="identity: epsilon must be finite and > 0"):
        PrivacySettings({"Male": 1.0}, 0.0)


def test_the_ledger_charges_laplace_from_the_bounds_the_release_uses(monkeypatch) -> None:
    import torch

    # The registry's Laplace entry on wider bounds: the release must add noise of scale
    # (hi - lo) / eps, and the ledger must charge that scale over the half-width.
    eps, bounds = 20.0, (-3.0, 5.0)
    spec = dataclasses.replace(MECHANISMS[Mechanism.LAPLACE], bounds=bounds)
    monkeypatch.setitem(MECHANISMS, Mechanism.LAPLACE, spec)
    scale = (bounds[1] - bounds[0]) / eps

    logits = torch.zeros(200_000)  # the intensity tanh(0) = 0, 7.5 noise scales from a bound
    released = spec.release_function()(logits, eps, spec, torch.Generator().manual_seed(3))
    assert released.min() >= bounds[0] and released.max() <= bounds[1]
    assert released.abs().mean().item() == pytest.approx(scale, rel=0.02)  # E|Laplace(b)| = b

    event = AttributeSpend("Male", Mechanism.LAPLACE, eps).event()
    half_width = (bounds[1] - bounds[0]) / 2
    assert event.parameter * half_width == pytest.approx(scale)
    assert event.to_dp_event().noise_multiplier == event.parameter
    assert compose([event], delta=1e-9).composed_epsilon == pytest.approx(eps, rel=1e-2)


def test_every_mechanism_is_one_entry() -> None:
    assert set(MECHANISMS) == set(Mechanism)
    protos = [spec.proto for spec in MECHANISMS.values()]
    assert len(set(protos)) == len(protos) and common_pb2.MECHANISM_UNSPECIFIED not in protos
    for spec in MECHANISMS.values():
        assert callable(spec.release_function()), spec.name


def test_the_vocabulary_imports_without_torch() -> None:
    """The gateway's privacy code (the vocabulary, the ledger, their conversions) loads no torch."""
    code = ("import sys, veil.privacy, veil.privacy.convert, veil.ledger, veil.ledger.convert; "
            "print('torch' in sys.modules, 'veil.diffusion' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("spelling", ["cap-x", "CAP-x", " cap-x ", "Cap-X\t", "\uff23\uff21\uff30-x"])
def test_subject_ids_have_one_canonical_form(spelling):
    assert canonical_subject_id(spelling) == "cap-x"


@pytest.mark.parametrize("bad", ["", "   ", "cap x", "cap/x", "caf\u00e9", "x" * 129, "a\x00b"])
def test_subject_ids_outside_the_form_are_refused(bad):
    with pytest.raises(InvalidArgument, match="not a subject id"):
        canonical_subject_id(bad)
