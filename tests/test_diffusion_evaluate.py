"""`veil eval` end to end on a tiny model: every bar is measured and reported, JSON included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from veil.cli import main as cli
from veil.data import generate_dataset
from veil.diffusion.evaluate import EvalReport, Gallery, kernel_inception_distance


def test_eval_reports_every_bar(tiny_model_dir: Path, tiny_faces: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    unseen = generate_dataset(tmp_path / "unseen", identities=8, per_identity=1, seed=9, size=32, test_per_identity=0,
                              workers=1)
    audit = ["--audit-data", str(unseen), "--tuning-probes", "4", "--audit-probes", "4", "--audit-eps", "0.5,1",
             "--audit-levels", "1,5"]
    code = cli(["eval", "--model", str(model), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10", "--steps", "2",
                "--json", str(out), "--cache", str(tmp_path / "cache"), "--write-card", *audit])
    report = json.loads(out.read_text())
    assert code == (0 if report["passed"] else 1)
    names = [r["name"] for r in report["rows"]]
    for expected in ("level0 reconstruction PSNR (dB)", "level0 |acc change| Male", "level0 re-ID / originals' re-ID",
                     "identity level 5 re-ID (gallery 10)", "identity level 5 re-ID (gallery 6)",
                     "identity level 5 utility drop Young", "audit z_sem fresh probe Male acc"):
        assert expected in names, expected
    for setting in ("attribute-only eps=0.5", "attribute-only eps=1", "level 1 eps=8", "level 5 eps=2"):
        for measure in ("clean attacker Male", "adaptive attacker Male", "ceiling Male", "kept-vs-flipped AUC",
                        "edit realised Male -1 -> +1", "edit realised Male +1 -> -1", "largest utility drop"):
            assert f"audit {setting} {measure}" in names, (setting, measure)
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["audit attribute-only eps=1 clean attacker Male"]["bar"] == "hi <= 0.751"  # bound 0.731 + 2 points
    assert rows["audit attribute-only eps=0.5 clean attacker Male"]["bar"] == "hi <= 0.642"
    assert all(0.0 <= r["measured"] <= 1.0 for n, r in rows.items() if "attacker" in n)
    details = report["details"]["audit"]
    # Tuning and test probes are named, disjoint in use and in decode seeds; No_Beard goes with Male.
    assert details["tuning"]["probes"] == 4 and details["test"]["probes"] == 4
    assert details["tuning"]["decode_seeds"] == [1] and details["test"]["decode_seeds"] == [2]
    assert details["tuning"]["identities_sha"] != details["test"]["identities_sha"]
    assert "No_Beard" in details["protected_group"] and "No_Beard" not in details["unchanged"]
    card = json.loads((model / "model_card.json").read_text())
    assert card["metrics"]["details"]["audit"]["test"]["used_for"] == "every reported measurement"
    table = capsys.readouterr().out
    assert "PASS" in table or "FAIL" in table
    assert list((tmp_path / "cache").glob("evaluators-*.safetensors")), "evaluators are cached for the next run"
    # Other probes, the same evaluators (read back, not trained again).
    again = tmp_path / "eval-probes-1.json"
    cli(["eval", "--model", str(model), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10",
         "--steps", "2", "--json", str(again), "--cache", str(tmp_path / "cache"), "--probe-seed", "1", *audit,
         "--audit-levels", "", "--audit-eps", "1"])
    assert json.loads(again.read_text())["details"]["eval_config"]["probe_seed"] == 1
    assert len(list((tmp_path / "cache").glob("evaluators-*.safetensors"))) == 1
    assert "evaluators read from" in capsys.readouterr().err


def test_report_verdicts() -> None:
    report = EvalReport("m")
    report.add("a", 0.70, "<=", 0.731)
    report.add("b", 0.80, "<=", 0.731)
    report.add("c", 0.95, ">=", 0.90)
    report.add("info", 3.0)
    assert [r.passed for r in report.rows] == [True, False, True, None]
    assert not report.passed
    assert "1 failed" in report.table()


def test_kid_separates_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 16, generator=gen)
    same = kernel_inception_distance(a, torch.randn(300, 16, generator=gen))
    shifted = kernel_inception_distance(a, torch.randn(300, 16, generator=gen) + 1.0)
    assert abs(same) < 0.02 < shifted


def test_gallery_reidentifies_its_own_images(tiny_faces: Path) -> None:
    from veil.data import load_celeba
    from veil.diffusion.evaluate import train_identity_embedder

    data = load_celeba(tiny_faces, size=16)
    train = data.split("train")
    embedder, _ = train_identity_embedder(train, epochs=30, batch=16, seed=0)
    ids = sorted(set(train.identities.tolist()))
    gallery = Gallery(embedder, train, __import__("numpy").array(ids))
    # On its own training images the embedding must find the right person far above chance (1/12).
    assert gallery.reid_rate(train.images, train.identities) > 0.5
