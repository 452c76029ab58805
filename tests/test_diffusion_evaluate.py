"""`veil eval` end to end on a tiny model: every bar is measured and reported, JSON included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from veil.cli import main as cli
from veil.diffusion.evaluate import EvalReport, Gallery, kernel_inception_distance


def test_eval_reports_every_bar(tiny_model_dir: Path, tiny_faces: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    code = cli(["eval", "--model", str(tiny_model_dir), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10", "--steps", "2",
                "--json", str(out), "--cache", str(tmp_path / "cache")])
    report = json.loads(out.read_text())
    assert code == (0 if report["passed"] else 1)
    names = [r["name"] for r in report["rows"]]
    for expected in ("level0 reconstruction PSNR (dB)", "level0 |acc change| Male", "level0 re-ID / originals' re-ID",
                     "rr eps=1 attacker acc Male", "rr eps=0.5 attacker acc Male", "rr eps=1 utility drop Smiling",
                     "identity level 5 re-ID (gallery 10)", "identity level 5 re-ID (gallery 6)", "identity level 5 utility drop Young"):
        assert expected in names, expected
    # No_Beard is implied by Male on these faces: reported apart, never as a utility row.
    assert "rr eps=1 implied No_Beard acc (protected with it)" in names
    assert not any(n.startswith("rr eps=1 utility drop No_Beard") for n in names)
    bars = {r["name"]: r["bar"] for r in report["rows"]}
    assert bars["rr eps=1 attacker acc Male"] == "<= 0.781" and bars["rr eps=0.5 attacker acc Male"] == "<= 0.672"
    assert bars["rr eps=2 attacker acc Male"] == ""  # the sweep beyond the bars is information
    assert all(0.0 <= r["measured"] <= 1.0 for r in report["rows"] if "acc Male" in r["name"])
    table = capsys.readouterr().out
    assert "PASS" in table or "FAIL" in table
    assert list((tmp_path / "cache").glob("evaluators-*.safetensors")), "evaluators are cached for the next run"
    # Other probes, the same evaluators (read back, not trained again).
    again = tmp_path / "eval-probes-1.json"
    cli(["eval", "--model", str(tiny_model_dir), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10",
         "--steps", "2", "--json", str(again), "--cache", str(tmp_path / "cache"), "--probe-seed", "1"])
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
