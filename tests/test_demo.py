"""`python -m veil_tools.demo` end to end on the tiny model (2 sampling steps): three real services on
loopback, training, a session of three rounds, the release, the unlearning job, retention, and
the contact sheet and report it writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from veil_tools.demo import photo, sheet
from veil_tools.demo.__main__ import main


def test_demo_end_to_end(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    # Unverified: the tiny model's classifier refuses many of its own decodes (4 candidates a round
    # are counted below).
    status = main(["--out", str(tmp_path), "--model", str(tiny_model_dir), "--steps", "2", "--decode-tries", "0",
                   "--train-epochs", "2", "--cap", "9"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    out = tmp_path / "demo"
    report = json.loads((out / "report.json").read_text())

    # Three rounds, the controller moving eps: level 5 (2, 2), MORE halves, LESS bisects.
    rounds = report["rounds"]
    assert [r["answer"] for r in rounds] == ["more", "less", "accept 0"]
    assert [r["level"] for r in rounds] == [5, -1, -1]
    expected = [2.0, 1.0, math.sqrt(2.0)]
    for r, eps in zip(rounds, expected):
        assert r["attribute_epsilon"] == {"Male": pytest.approx(eps)}
        assert r["identity_epsilon"] == pytest.approx(eps)
        assert len(r["candidates"]) == 4
        for candidate in r["candidates"]:
            (released,) = candidate["receipt"]["attributes"]
            assert released["attribute"] == "Male" and released["epsilon"] == pytest.approx(eps)
            assert released["released_value"] in (-1.0, 1.0)
            assert candidate["receipt"]["model_version"] == "tiny-test"
    assert [e["Male"] for e in report["eps_per_round"]] == pytest.approx(expected)

    # One release, charged to the ledger: the plain sum of its two events, composed by PLD.
    release = report["release"]
    assert release["round"] == 3 and release["candidate"] == 0
    assert release["receipt"]["receipt_id"] == rounds[2]["candidates"][0]["receipt"]["receipt_id"]
    assert release["charged_epsilon"] == pytest.approx(2 * math.sqrt(2.0))
    assert len(release["unlearning_request_ids"]) == 1
    summary = report["ledger"]["summary"]
    assert summary["cap"] == 9.0 and summary["sum_epsilon"] == pytest.approx(2 * math.sqrt(2.0))
    # The Gaussian is calibrated at delta 1e-5 and reported at 1e-6: composed exceeds the sum.
    assert summary["sum_epsilon"] < summary["composed_epsilon"] < summary["cap"]
    # What one more attribute release could spend, on the ledger's 1e-3 grid, below cap - composed.
    unspent = summary["cap"] - summary["composed_epsilon"]
    assert unspent - 0.002 <= summary["remaining"] <= unspent
    (entry,) = report["ledger"]["entries"]
    assert entry["session_id"] == report["session"]["session_id"]
    assert report["session"]["state"] == "SESSION_STATE_ACCEPTED"

    # A new model version, written by the unlearning job, naming the session; original deleted.
    models = report["models"]
    assert (models["trained_version"], models["updated_version"]) == ("v1", "v2")
    assert [v["version"] for v in models["before"]] == ["v1"]
    assert [v["version"] for v in models["after"]] == ["v2", "v1"]
    assert models["updated_card"]["parent"] == "v1"
    assert models["updated_card"]["session_ids"] == [report["session"]["session_id"]]
    (job,) = report["unlearning_jobs"]
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["result_version"] == "v2"
    assert job["session_ids"] == [report["session"]["session_id"]]
    assert report["training_job"]["state"] == "JOB_STATE_SUCCEEDED"
    assert 0.0 <= report["unlearning_evaluation"]["agreement"] <= 1.0
    assert report["original_deleted"] is True
    actions = [a["action"] for a in report["audit"]]
    assert actions.index("release.accept") < actions.index("original.delete")

    # The services' metrics, scraped at the end.
    gateway, anonymizer = report["metrics"]["gateway"], report["metrics"]["anonymizer"]
    # (the face session's 3 rounds and 1 release, the photo session's 1 and 1)
    assert gateway["veil_gateway_releases_total"] == 2.0
    assert gateway["veil_gateway_round_seconds_count"] == 4.0
    assert gateway["veil_gateway_unlearning_jobs_total{outcome=succeeded}"] == 1.0
    assert anonymizer["veil_anonymizer_images_total{outcome=succeeded}"] == 4.0
    assert report["metrics"]["unlearner"][
        "veil_unlearning_jobs_total{kind=unlearn,outcome=succeeded}"] == 1.0

    # The contact sheet: original | 4 candidates | accepted, one row per round.
    with Image.open(out / "contact_sheet.png") as image:
        width, height = image.size
    assert width == sheet.GAP + 6 * (sheet.TILE + sheet.GAP) + sheet.GAP
    assert height == (sheet.GAP + sheet.TEXT + sheet.GAP
                      + 3 * (sheet.TEXT + sheet.TILE + sheet.TEXT + sheet.GAP))
    assert "demo done in" in printed and "v1 -> v2" in printed

    # The real photo: her face (and whatever else the detector took for one) anonymized, each
    # face charged at level 7 (Male 1 + identity 1); original | 2 candidates | release.
    faces = report["photo"]["faces"]
    assert report["photo"]["size"] == [512, 512] and faces
    assert all(f["action"] == "anonymized" and f["receipt_id"] for f in faces)
    assert any(abs((f["box"][0] + f["box"][2]) / 2 - 220) < 20 for f in faces)
    assert report["photo"]["charged_epsilon"] == pytest.approx(2.0 * len(faces))
    with Image.open(out / "photo.png") as image:
        assert image.size == (photo.GAP + 4 * (photo.TILE + photo.GAP),
                              photo.GAP + photo.TEXT + photo.TILE + photo.GAP)
