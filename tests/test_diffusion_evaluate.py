"""`veil eval` end to end on a tiny model: every bar is measured and reported, JSON included."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from veil.cli import main as cli
from veil.data import generate_dataset
from veil.diffusion.evaluate import EvalReport, Gallery, kernel_inception_distance
from veil.diffusion.sweep import example_grid


def test_eval_reports_every_bar(tiny_model_dir: Path, tiny_faces: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    unseen = generate_dataset(tmp_path / "unseen", identities=8, per_identity=1, seed=9, size=32, test_per_identity=0,
                              workers=1)
    audit = ["--audit-data", str(unseen), "--tuning-probes", "4", "--audit-probes", "4", "--audit-eps", "0.5,1",
             "--audit-levels", "1,5"]
    examples = tmp_path / "figures" / "levels.png"
    code = cli(["eval", "--model", str(model), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10", "--steps", "2",
                "--json", str(out), "--cache", str(tmp_path / "cache"), "--write-card", "--examples", str(examples),
                *audit])
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
    # Two decoding groups (no identity noise and rho 0: attribute-only and level 1; level 5), tuning and
    # test probes each: kept, and read back by a rerun that reports the same figures.
    assert len(list((tmp_path / "cache").glob("audit-outcomes-*.npz"))) == 4
    rerun = tmp_path / "eval-rerun.json"
    cli(["eval", "--model", str(model), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10", "--steps", "2",
         "--json", str(rerun), "--cache", str(tmp_path / "cache"), "--sweep-levels", "", *audit])
    assert capsys.readouterr().err.count("audit: outcomes read from") == 4
    audit_rows = [r for r in report["rows"] if r["name"].startswith("audit ")]
    assert [r for r in json.loads(rerun.read_text())["rows"] if r["name"].startswith("audit ")] == audit_rows
    # Other probes, the same evaluators (read back, not trained again).
    again = tmp_path / "eval-probes-1.json"
    cli(["eval", "--model", str(model), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10",
         "--steps", "2", "--json", str(again), "--cache", str(tmp_path / "cache"), "--probe-seed", "1", *audit,
         "--audit-levels", "", "--audit-eps", "1", "--sweep-levels", "3,0", "--audit-decode-tries", "2"])
    again_report = json.loads(again.read_text())
    # Verified edits as served: refusals are reported, the rest measured over what is released.
    [verified] = again_report["details"]["audit"]["settings"]
    assert again_report["details"]["audit"]["config"]["decode_tries"] == 2
    assert 0 < verified["released_probes"] <= 4
    again_rows = {r["name"]: r for r in again_report["rows"]}
    assert 0.0 <= again_rows["audit attribute-only eps=1 refused kept"]["measured"] <= 1.0
    for direction in ("-1 -> +1", "+1 -> -1"):  # NaN when no probe of 4 starts on that side
        refused = again_rows[f"audit attribute-only eps=1 refused flipped Male {direction}"]["measured"]
        assert math.isnan(refused) or 0.0 <= refused <= 1.0
    assert again_report["details"]["eval_config"]["probe_seed"] == 1
    assert [e["level"] for e in again_report["details"]["levels"]["levels"]] == [3, 0]
    assert again_report["seeds"]["level_sweep_decodes"] == [1 + 100 + 3, 1]
    assert len(list((tmp_path / "cache").glob("evaluators-*.safetensors"))) == 1
    assert "evaluators read from" in capsys.readouterr().err


def test_level_sweep_measures_every_level(tiny_model_dir: Path, tiny_faces: Path, tmp_path: Path) -> None:
    """Identity and utility at each level with Male protected; level 0 is the rows' reconstruction."""
    out, examples = tmp_path / "eval.json", tmp_path / "figures" / "levels.png"
    unseen = generate_dataset(tmp_path / "unseen", identities=4, per_identity=1, seed=9, size=32, test_per_identity=0,
                              workers=1)
    cli(["eval", "--model", str(tiny_model_dir), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10",
         "--steps", "2", "--json", str(out), "--cache", str(tmp_path / "cache"), "--examples", str(examples),
         "--audit-data", str(unseen), "--tuning-probes", "2", "--audit-probes", "2", "--audit-eps", "1",
         "--audit-levels", ""])
    report = json.loads(out.read_text())
    sweep = report["details"]["levels"]
    entries = sweep["levels"]
    assert [e["level"] for e in entries] == list(range(11))
    assert "Male" not in sweep["utility_attributes"] and "No_Beard" not in sweep["utility_attributes"]
    assert set(sweep["utility_attributes"]) == set(entries[5]["accuracy"]) and "Young" in sweep["utility_attributes"]
    assert (sweep["gallery"], sweep["small_gallery"]) == (10, 6)
    for entry in [sweep["originals"], *entries]:
        for measure in ("reid", "reid_small", "utility"):
            interval = entry[measure]
            assert interval["low"] <= interval["value"] <= interval["high"], (entry.get("level"), measure)
        values = list(entry["accuracy"].values())
        assert entry["utility"]["value"] == pytest.approx(sum(values) / len(values))
    assert sweep["originals"]["accuracy"] == pytest.approx(
        {a: v for a, v in report["details"]["original_accuracy"].items() if a in sweep["utility_attributes"]}, abs=1e-4)
    # Level 0 is the reconstruction the level-0 rows measured, not a second decode.
    level0 = entries[0]
    assert level0["reused"] and level0["seed"] == 0 and level0["attribute_epsilon"] is None
    assert not any(e["reused"] for e in entries[1:])
    assert len({e["seed"] for e in entries}) == 11
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["level0 re-ID / originals' re-ID"]["measured"] == pytest.approx(
        level0["reid"]["value"] / sweep["originals"]["reid"]["value"])
    for attr, accuracy in level0["accuracy"].items():
        assert rows[f"level0 |acc change| {attr}"]["note"].endswith(f"-> {accuracy:.3f}")
    assert (entries[5]["attribute_epsilon"], entries[5]["identity_epsilon"], entries[5]["rho"]) == (2.0, 2.0, 1.0)
    assert (entries[1]["attribute_epsilon"], entries[1]["identity_epsilon"], entries[1]["rho"]) == (8.0, None, 0.0)
    # The grid: 6 probes by the originals and 11 levels, 16 px faces tripled with 2 px between.
    assert sweep["examples"] == "figures/levels.png"
    grid = Image.open(examples)
    assert grid.format == "PNG" and grid.size == (12 * 50 - 2, 6 * 50 - 2)
    assert report["seeds"]["probe_seed"] == 0 and report["machine"]["cpus"] >= 1


def test_sweep_levels_option_is_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before the (absent) model is read.
    assert cli(["eval", "--model", str(tmp_path / "absent"), "--sweep-levels", "0,11"]) == 2
    assert "privacy level must be an integer in 0..10, got 11" in capsys.readouterr().err
    assert cli(["eval", "--model", str(tmp_path / "absent"), "--sweep-levels", "", "--examples",
                str(tmp_path / "x.png")]) == 2
    assert "give at least one with --sweep-levels" in capsys.readouterr().err
    assert cli(["eval", "--model", str(tmp_path / "absent"), "--sweep-levels", "1,x"]) == 2
    assert "--sweep-levels expects comma-separated integers" in capsys.readouterr().err


def test_example_grid_places_each_release() -> None:
    originals = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    released = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    released[1] = 200
    grid = example_grid([originals, released], scale=2, gap=1)
    assert grid.shape == (2 * 9 - 1, 2 * 9 - 1, 3)
    assert (grid[:8, :8] == 0).all() and (grid[:8, 9:] == 100).all() and (grid[9:, 9:] == 200).all()
    assert (grid[8] == 255).all() and (grid[:, 8] == 255).all()


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
