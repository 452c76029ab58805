"""`python -m veil_tools.bench`: a quick real run writes a record of the documented shape, and
--compare between two records the harness wrote flags a figure made 2x worse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from veil_tools.bench.__main__ import main
from veil_tools.bench.record import SCHEMA, read_record


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two quick runs of the store section (LocalStore and S3Store on a real nanio server)."""
    out = tmp_path_factory.mktemp("bench")
    for name in ("first", "second"):
        assert main(["store", "--quick", "--out", str(out), "--name", name, "--seed", "3"]) == 0
    return out / "first.json", out / "second.json"


def test_a_quick_run_writes_the_record_schema(records: tuple[Path, Path]) -> None:
    record = read_record(records[0])
    assert record["schema"] == SCHEMA and record["name"] == "first"
    assert {"hostname", "cpu", "cpu_count", "python", "gpu"} <= record["machine"].keys()
    assert {"torch", "onnxruntime", "numpy"} <= record["versions"].keys()
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"])
    assert record["settings"] == {"sections": ["store"], "quick": True, "device": "cpu",
                                  "model": record["settings"]["model"], "repeats": 1, "seed": 3}
    expected = {f"store.{backend}.{size}MiB.{op}" for backend in ("local", "s3")
                for size in (1, 4) for op in ("put", "get")}
    assert set(record["figures"]) == expected
    for stats in record["figures"].values():
        assert stats["unit"] == "MiB/s" and stats["better"] == "higher"
        assert len(stats["samples"]) == 1
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]


def _scaled(stats: dict, factor: float) -> dict:
    samples = [s * factor for s in stats["samples"]]
    return {**stats, "samples": samples, "min": min(samples), "median": sorted(samples)[len(samples) // 2],
            "max": max(samples)}


def test_compare_flags_a_2x_regression_and_nothing_else(records: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first, second = records
    new = json.loads(second.read_text())
    # The second run with S3 gets half as fast (a regression) and local gets twice as fast (not one).
    new["figures"]["store.s3.4MiB.get"] = _scaled(new["figures"]["store.s3.4MiB.get"], 0.5)
    new["figures"]["store.local.4MiB.put"] = _scaled(new["figures"]["store.local.4MiB.put"], 2.0)
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps(new))
    capsys.readouterr()
    # Against itself, undoctored: nothing is flagged, every ratio is 1.
    assert main(["--compare", str(second), "--against", str(second)]) == 0
    same = capsys.readouterr().out
    assert "REGRESSION" not in same and len(re.findall(r"^store\.\S+ .* 1\.00$", same, re.M)) == 8
    assert main(["--compare", str(second), "--against", str(doctored), "--threshold", "0.25"]) == 1
    out = capsys.readouterr().out
    flagged = [line.split()[0] for line in out.splitlines() if line.endswith("REGRESSION")]
    assert flagged == ["store.s3.4MiB.get"]
    assert re.search(r"store\.s3\.4MiB\.get\s+MiB/s\s+\S+\s+\S+\s+0\.50  REGRESSION", out)
    assert re.search(r"store\.local\.4MiB\.put\s+MiB/s\s+\S+\s+\S+\s+2\.00\n", out)
    # Two real runs are compared figure by figure (their ratios are whatever the machine gave).
    main(["--compare", str(first), "--against", str(second), "--threshold", "100"])
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("store.")]) == 8


def test_device_cuda_fails_clearly_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime
    import torch

    if torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA and onnxruntime-gpu")
    assert main(["store", "--quick", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unknown_sections_and_a_foreign_file_are_refused(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["decoder"])
    assert "unknown section(s) decoder" in capsys.readouterr().err
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"figures": {}}))
    assert main(["--compare", str(foreign), "--against", str(foreign)]) == 2
    assert "is not a veil-bench/1 benchmark record" in capsys.readouterr().err


def test_the_unlearning_section_runs_at_the_default_seed(tmp_path: Path) -> None:
    # The default --seed is the unlearning study's tuning seed; the section runs untuned, so the
    # two must not clash (they once did, and `make bench` ended in an error).
    assert main(["unlearning", "--quick", "--out", str(tmp_path), "--name", "u"]) == 0
    figures = read_record(tmp_path / "u.json")["figures"]
    for pct in (1, 5):
        assert figures[f"unlearning.{pct}pct.retrain.cpu_s"]["median"] > 0
        assert figures[f"unlearning.{pct}pct.second-cg.speedup"]["median"] > 0
