"""The simulated data owner against real services (tiny model), its policy, and the report
generator on the owner's JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from veil.data.synth import ATTRIBUTES, iter_samples
from veil.errors import InvalidArgument
from veil.images import encode_png
from veil.v1 import gateway_pb2
from veil_tools.localrun import model_info
from veil_tools.owner.__main__ import main as owner_main, parse_setting
from veil_tools.owner.attacker import AttackerSpec, cached_attacker
from veil_tools.owner.play import play_probe
from veil_tools.owner.policy import OwnerPolicy, decide
from veil_tools.report.__main__ import build, main as report_main
from veil_tools.report.owner import FIGURE

NAMES = list(ATTRIBUTES)


def readings(**present: float) -> np.ndarray:
    """Attacker probabilities: 0.1 for every attribute unless given."""
    return np.array([present.get(name, 0.1) for name in NAMES])


def test_policy_asks_more_privacy_when_the_round_reveals_the_attribute() -> None:
    policy = OwnerPolicy(privacy_target=0.6, utility_floor=0.8)
    original = readings(Male=0.9)
    revealing = np.stack([readings(Male=0.9), readings(Male=0.7)])
    decision = decide(policy, NAMES, ["Young", "Smiling"], True, original, revealing)
    assert (decision.answer, decision.candidate) == ("more", -1)
    assert decision.privacy == pytest.approx(0.8)


def test_policy_asks_less_privacy_when_no_candidate_keeps_the_rest() -> None:
    policy = OwnerPolicy(privacy_target=0.6, utility_floor=0.8)
    original = readings(Male=0.9, Young=0.9)
    hidden_but_aged = np.stack([readings(Male=0.2), readings(Male=0.3)])
    decision = decide(policy, NAMES, ["Young", "Smiling"], True, original, hidden_but_aged)
    assert decision.answer == "less" and decision.utility == [0.5, 0.5]


def test_policy_accepts_the_most_useful_private_candidate() -> None:
    policy = OwnerPolicy(privacy_target=0.6, utility_floor=0.5)
    original = readings(Young=0.9)  # Male absent: the attacker's accuracy is 1 - P(Male)
    candidates = np.stack([readings(Male=0.6), readings(Male=0.7, Young=0.8)])
    decision = decide(policy, NAMES, ["Young", "Smiling"], False, original, candidates)
    assert (decision.answer, decision.candidate, decision.utility) == ("accept", 1, [0.5, 1.0])
    with pytest.raises(InvalidArgument):
        OwnerPolicy(privacy_target=0.3)


def test_owner_cli_refuses_random_session_seeds_and_bad_settings(tmp_path: Path) -> None:
    assert parse_setting("0.7:5") == (0.7, 5)
    with pytest.raises(InvalidArgument):
        parse_setting("0.7")
    with pytest.raises(InvalidArgument, match="seed"):
        owner_main(["--out", str(tmp_path / "o.json"), "--seed", "0"])


def test_owner_drives_the_gateway_and_the_controller_steps_by_the_configured_factor(
        start_gateway, anonymizer_service, new_tenant, tmp_path: Path) -> None:
    gateway = start_gateway(VEIL_EPS_MORE_FACTOR="0.7")
    info = model_info(anonymizer_service.target)
    attacker = cached_attacker(AttackerSpec(image_size=info.image_size, identities=30, per_identity=2,
                                            steps=40), tmp_path)
    assert cached_attacker(AttackerSpec(image_size=info.image_size, identities=30, per_identity=2,
                                        steps=40), tmp_path).weights.tobytes() == attacker.weights.tobytes()
    faces = list(iter_samples(5, 2, 1, info.image_size, first_identity=900))
    lenient = OwnerPolicy(privacy_target=1.0, utility_floor=0.0, max_rounds=3)
    strict = OwnerPolicy(privacy_target=0.5, utility_floor=1.0, max_rounds=2)
    tenant = new_tenant()
    with gateway.client(tenant) as client:
        accepted = play_probe(client, info, attacker, lenient, encode_png(np.asarray(faces[0].image)),
                              faces[0].attributes["Male"], subject="owner-a", level=5, candidates=2, seed=1)
        refused = play_probe(client, info, attacker, strict, encode_png(np.asarray(faces[1].image)),
                             faces[1].attributes["Male"], subject="owner-b", level=5, candidates=2, seed=2)
        sessions = {s.subject_id: client.get_session(s.session_id) for s in client.list_sessions()}
    assert (accepted.accepted, accepted.rounds, accepted.log[0].answer) == (True, 1, "accept")
    assert accepted.charged_epsilon > 0
    assert sessions["owner-a"].state == gateway_pb2.SESSION_STATE_ACCEPTED
    assert sessions["owner-a"].release.charged_epsilon == pytest.approx(accepted.charged_epsilon)
    # The strict owner answers round 1 and gives up on round 2; the gateway moved eps by 0.7.
    assert (refused.accepted, refused.rounds, refused.charged_epsilon) == (False, 2, 0.0)
    assert sessions["owner-b"].round_count == 2
    first, second = (log.attribute_epsilon["Male"] for log in refused.log)
    expected = first * 0.7 if refused.log[0].answer == "more" else first / 0.7
    assert refused.log[0].answer in ("more", "less") and second == pytest.approx(expected)


def owner_json() -> dict:
    def probe(rounds: int, charged: float, accepted: bool = True) -> dict:
        return {"subject": "s", "session_id": "", "protected_value": True, "accepted": accepted, "rounds": rounds,
                "charged_epsilon": charged, "final_attribute_epsilon": charged / 2, "log": []}

    return {"kind": "owner", "model_version": "tiny-test", "machine": {"cpus": 2},
            "seeds": {"sessions": 0}, "run": {"probes": 3, "candidates": 2, "sampling_steps": 4},
            "policy": {"protect": "Male", "privacy_target": 0.65, "utility_floor": 0.8, "max_rounds": 4},
            "attacker_train_accuracy": {"Male": 0.9},
            "settings": [
                {"more_factor": 0.5, "start_level": 5,
                 "probes": [probe(1, 4.0), probe(2, 2.0), probe(4, 0.0, accepted=False)]},
                {"more_factor": 0.7, "start_level": 5,
                 "probes": [probe(1, 4.0), probe(3, 2.5), probe(2, 2.8)]}]}


def test_report_names_its_figures_and_is_reproducible(tmp_path: Path) -> None:
    source = tmp_path / "owner.json"
    source.write_text(json.dumps(owner_json()))
    report = build({"owner": source}, tmp_path / "a")
    text = report.read_text()
    assert f"](figures/{FIGURE})" in text and "model `tiny-test`" in text
    assert "| MORE x0.5, start level 5 | 2/3 | 1.50 ± 0.98 | 1: 1, 2: 1 | 3.00 / 3.00 | 1.50 |" in text
    assert "| MORE x0.7, start level 5 | 3/3 | 2.00 ± 1.13 | 1: 1, 2: 1, 3: 1 | 3.10 / 2.80 |" in text
    png = (tmp_path / "a" / "figures" / FIGURE).read_bytes()
    assert Image.open(io.BytesIO(png)).size[0] > 500
    assert report_main(["--owner", str(source), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "privacy-utility.md").read_bytes() == report.read_bytes()
    assert (tmp_path / "b" / "figures" / FIGURE).read_bytes() == png
    with pytest.raises(InvalidArgument):
        build({}, tmp_path / "c")
