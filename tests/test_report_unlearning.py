"""The report's unlearning section on the JSON of a real (tiny) unlearning benchmark run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from veil_tools.bench.unlearning import main as bench_main
from veil_tools.report.__main__ import build, main as report_main
from veil_tools.report.unlearning import FIGURE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's own JSON output: 40 subjects, 10% replaced (4 photos, all canaries), on
    two reported seeds."""
    path = tmp_path_factory.mktemp("bench") / "unlearning.json"
    assert bench_main(["--identities", "40", "--size", "16", "--epochs", "5", "--shadows", "2",
                       "--no-tune", "--fractions", "0.1", "--methods", "first", "second-cg",
                       "--seeds", "1", "2", "--json", str(path)]) == 0
    return path


def expected_line(row: dict, reference: dict, name: str) -> str:
    """The table row written out from the JSON's numbers, independently of the renderer."""
    canary = f"{row['canary_success']:.3f}"
    mia = f"{row['mia_auc']:.3f}"
    if row is not reference:
        canary += f" ({100 * (row['canary_success'] - reference['canary_success']):+.1f} pt)"
        mia += f" ({row['mia_auc'] - reference['mia_auc']:+.3f})"
    cpu = f"{row['cpu_time_seconds']:.2f}" if "cpu_time_seconds" in row else "–"
    speedup = f"{row['speedup']:.1f}x" if "speedup" in row else "–"
    return (f"| {name} | {cpu} | {speedup} | {row['test_accuracy']:.4f} | {canary} "
            f"| {row['canary_effect']:+.3f} | {row['canary_exposure']:.2f} | {mia} | {row['lira_auc']:.3f} | {row['probe_leakage']:.3f} |")


def test_section_shows_the_bench_numbers_and_is_reproducible(bench_json: Path, tmp_path: Path) -> None:
    data = json.loads(bench_json.read_text())
    all_rows = data["rows"]
    assert [(r["seed"], r["method"]) for r in all_rows] == [
        (seed, method) for seed in (1, 2) for method in ("retrain", "none", "first", "second-cg")]
    rows = all_rows[:4]
    report = build({"unlearning": bench_json}, tmp_path / "a")
    text = report.read_text()
    assert "40 subjects, 2 photos each" in text and "at 16x16 px" in text
    assert "(small model, 5 epochs, weight decay 0.0005)" in text
    assert "4 training photos carry a 4 px canary patch labelled Eyeglasses = 1" in text
    assert "The numbers are from seeds 1 and 2, with the untuned settings" in text
    assert f"### 10% replaced (4 photos, {rows[0]['changed']} with the protected value changed)" in text
    retrain = rows[0]
    names = ["retrain (reference)", "parent (no update)", "first", "second-cg"]
    for row, name in zip(rows, names):  # the tables are the first seed's
        assert expected_line(row, retrain, name) in text.splitlines()
    assert "### Across seeds 1 and 2" in text
    for k, name in ((1, "parent (no update)"), (3, "second-cg")):
        gaps = [f"{100 * (seed_rows[k]['canary_success'] - seed_rows[0]['canary_success']):+.1f} pt / "
                f"{seed_rows[k]['mia_auc'] - seed_rows[0]['mia_auc']:+.3f}"
                for seed_rows in (all_rows[:4], all_rows[4:])]
        assert f"| 10% | {name} | {gaps[0]} | {gaps[1]} |" in text.splitlines()
    assert data["summary"][0].startswith("seed 1: setup at 10%: ")
    assert data["summary"][-2].startswith("first at 10% over seeds 1, 2: canary ")
    assert data["summary"][-1].endswith(" of 2")
    for line in data["summary"]:
        assert f"- {line}" in text.splitlines()
    assert "differ from the verdicts the bench printed" not in text
    assert f"](figures/{FIGURE})" in text

    png = (tmp_path / "a" / "figures" / FIGURE).read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size == (1200, 450)
    assert report_main(["--unlearning", str(bench_json), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "privacy-utility.md").read_bytes() == report.read_bytes()
    assert (tmp_path / "b" / "figures" / FIGURE).read_bytes() == png


def test_failed_method_shows_its_error(bench_json: Path, tmp_path: Path) -> None:
    data = json.loads(bench_json.read_text())
    # What the bench writes when an update aborts: the row's setting and the error, no numbers.
    failed = {key: data["rows"][3][key] for key in ("fraction", "pairs", "changed", "seed", "method", "params")}
    data["rows"][3] = {**failed, "error": "CG did not converge | residual 3.2"}
    source = tmp_path / "failed.json"
    source.write_text(json.dumps(data))
    text = build({"unlearning": source}, tmp_path / "out").read_text()
    assert "| second-cg | failed: CG did not converge \\| residual 3.2 | | | | | | | | |" in text.splitlines()
    assert "- seed 1: second-cg at 10%: MISS (failed: CG did not converge | residual 3.2)" in text.splitlines()
    assert "| 10% | second-cg | failed | " in text
    assert "- second-cg at 10% over seeds 1, 2: canary " in text  # seed 2's update still counts
    # The recorded verdicts came from the working update, so the section says they differ.
    assert "These differ from the verdicts the bench printed when it measured" in text
    assert (tmp_path / "out" / "figures" / FIGURE).read_bytes().startswith(PNG_SIGNATURE)
