"""The report's privacy section, rendered from the JSON of a real `veil eval` run (tiny model,
a cheap audit): its figures, its tables carrying the JSON's values, and reproducible bytes."""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from veil.cli import main as cli
from veil.data import generate_dataset
from veil_tools.report.__main__ import build
from veil_tools.report.privacy import EPS_FIGURE, IDENTITY_FIGURE, LEVEL_FIGURE, UTILITY_FIGURE, render

FIGURES = (EPS_FIGURE, LEVEL_FIGURE, IDENTITY_FIGURE, UTILITY_FIGURE)


@pytest.fixture(scope="module")
def eval_json(tiny_model_dir: Path, tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`veil eval --json` as `make eval` runs it: the JSON and the example grid in the report's folder."""
    root = tmp_path_factory.mktemp("eval")
    unseen = generate_dataset(root / "unseen", identities=8, per_identity=1, seed=9, size=32, test_per_identity=0,
                              workers=1)
    out = root / "reports" / "eval.json"
    cli(["eval", "--model", str(tiny_model_dir), "--data", str(tiny_faces), "--probes", "6", "--gallery", "10",
         "--steps", "2", "--cache", str(root / "cache"), "--audit-data", str(unseen), "--tuning-probes", "4",
         "--audit-probes", "4", "--audit-eps", "0.5,1", "--audit-levels", "1,5", "--sweep-levels", "0,3,5,10",
         "--examples", str(root / "reports" / "figures" / "levels-examples.png"), "--json", str(out),
         "--audit-decode-tries", "2"])
    return out


def shown(value: dict) -> str:
    if math.isnan(value["value"]):  # no trials (a side no probe of 4 starts on)
        return "n/a"
    return f"{value['value']:.3f} ({value['low']:.3f}-{value['high']:.3f})"


def test_section_draws_its_figures_and_carries_the_json(eval_json: Path) -> None:
    data = json.loads(eval_json.read_text())
    reports = eval_json.parent
    report = build({"privacy": eval_json}, reports)
    text = report.read_text()
    for name in FIGURES:
        assert f"](figures/{name})" in text
        png = Image.open(io.BytesIO((reports / "figures" / name).read_bytes()))
        assert png.format == "PNG" and png.size[0] >= 600
    assert "![example releases per level](figures/levels-examples.png)" in text
    # Provenance: the eval's seeds and machine.
    assert f"level_sweep_decodes {data['seeds']['level_sweep_decodes']}" in text
    assert f"cpus {data['machine']['cpus']}" in text and "model `tiny-test`" in text

    audit = data["details"]["audit"]
    assert [s["name"] for s in audit["settings"]] == ["attribute-only", "attribute-only", "level 1", "level 5"]
    for s in audit["settings"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {s['name']} | {s['epsilon']:g} |"))
        for key in ("clean", "adaptive", "ceiling", "detector", "realised_to_minus", "refused_to_plus",
                    "refused_to_minus"):
            assert shown(s[key]) in row, (s["name"], key)
        assert f"| {s['bound']:.3f} |" in row
    sweep = data["details"]["levels"]
    assert [e["level"] for e in sweep["levels"]] == [0, 3, 5, 10]
    for e in sweep["levels"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {e['level']} | "))
        assert all(shown(e[key]) in row for key in ("reid", "reid_small", "utility")), e["level"]
    assert "0 (the level-0 rows' reconstruction)" in text
    assert "Verified edits as served (`VEIL_DECODE_TRIES=2`)" in text
    # Every barred row, misses written out.
    barred = [r for r in data["rows"] if r["bar"]]
    for r in barred:
        name = r["name"].replace("|", "\\|")
        verdict = "PASS" if r["passed"] else "**MISS**"
        assert f"| {name} | {r['measured']:.3f} | {r['bar']} | {verdict} |" in text, r["name"]
    missed = sum(r["passed"] is False for r in barred)
    assert f"{len(barred) - missed} of {len(barred)} bars met." in text
    # Which probes served what.
    for name in ("tuning", "test"):
        probes = audit[name]
        assert f"| {name} | {probes['probes']} | `unseen` | 0 | {probes['decode_seeds'][0]} " \
               f"| `{probes['identities_sha']}` | {probes['used_for']} |" in text
    assert f"accuracy {shown(audit['zsem_probe'])} (majority class" in text


def test_rendering_twice_gives_the_same_bytes(eval_json: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        shutil.copytree(eval_json.parent, out)
        build({"privacy": out / "eval.json"}, out)
    for name in ("privacy-utility.md", *(f"figures/{f}" for f in FIGURES)):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # The provenance line names the input file only, not its folder.
    assert str(tmp_path) not in (first / "privacy-utility.md").read_text()


def test_missing_parts_are_said_not_drawn(eval_json: Path, tmp_path: Path) -> None:
    data = copy.deepcopy(json.loads(eval_json.read_text()))
    data["details"]["levels"]["levels"] = []
    data["details"]["audit"]["settings"] = [s for s in data["details"]["audit"]["settings"] if s["name"] != "attribute-only"]
    text = render(data, tmp_path / "figures")  # the grid is not beside this figures folder
    assert "The audit measured no attribute-only release." in text and f"figures/{LEVEL_FIGURE}" in text
    assert "The eval swept no level" in text
    assert "The example grid `figures/levels-examples.png` named by the eval is absent" in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [LEVEL_FIGURE]
    del data["details"]["levels"]  # as `veil eval` wrote it before it swept levels
    assert "This eval's JSON has no level sweep." in render(data, tmp_path / "figures")
