"""`veil train --data`: a model trained on a CelebA-format folder of real faces (what `make train
DATA=...` runs), resumed once, then used on a whole photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from fixtures_diffusion import TINY
from veil.cli import main as cli
from veil.diffusion.pipeline import DiffusionAutoencoder

ATTRIBUTES = ("Male", "Smiling")


def _celeba_folder(root: Path, faces: int = 24) -> Path:
    """CelebA's layout written by hand: lfw_subset's real faces at 32 px under img_align_celeba/,
    the attribute, identity and partition files beside it (the last four faces are the test split)."""
    (root / "img_align_celeba").mkdir(parents=True)
    lfw = (data.lfw_subset()[:faces] * 255).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    attr_rows, id_rows, split_rows = [], [], []
    for index, grey in enumerate(lfw):
        name = f"{index + 1:06d}.jpg"
        Image.fromarray(grey).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC).save(
            root / "img_align_celeba" / name, quality=95)
        attr_rows.append(f"{name} " + " ".join(f"{v:>2}" for v in rng.choice([-1, 1], size=len(ATTRIBUTES))))
        id_rows.append(f"{name} {index // 2 + 1}")
        split_rows.append(f"{name} {2 if index >= faces - 4 else 0}")
    (root / "list_attr_celeba.txt").write_text("\n".join([str(faces), " ".join(ATTRIBUTES), *attr_rows]) + "\n")
    (root / "identity_CelebA.txt").write_text("\n".join(id_rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(split_rows) + "\n")
    return root


def _train(config: Path, celeba: Path, run: Path, model: Path, until: int) -> int:
    return cli(["train", "--config", str(config), "--data", str(celeba), "--image-size", "32", "--run-dir", str(run),
                "--until-step", str(until), "--export", str(model), "--model-version", "celeba32-test",
                "--device", "cpu"])


def test_train_on_a_celeba_folder_resume_and_anonymize_a_photo(tmp_path: Path) -> None:
    celeba = _celeba_folder(tmp_path / "celeba")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "steps": 100, "checkpoint_every": 2}))
    run, model = tmp_path / "run", tmp_path / "model"
    assert _train(config, celeba, run, model, until=3) == 0
    assert _train(config, celeba, run, model, until=6) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in log if r.get("event") in ("resumed", "stop")] == [
        ("stop", 3), ("resumed", 3), ("stop", 6)]

    loaded = DiffusionAutoencoder.from_pretrained(model, device="cpu")
    card = loaded.card
    assert loaded.image_size == 32 and card.attribute_names == list(ATTRIBUTES)
    assert card.training["steps_done"] == 6 and card.training["config"]["data_dir"] == str(celeba)
    assert card.training["config"]["encoder_channels"] == [8, 16, 16, 16]  # TINY's 16 px trunk grown to 32 px
    assert card.data["source"] == "celeba-format folder" and "generator" not in card.data
    assert card.data["root"] == str(celeba) and card.data["train_images"] == 20

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    out = tmp_path / "out.png"
    assert cli(["anonymize", str(photo), "--out", str(out), "--model", str(model), "--steps", "2", "--seed", "1",
                "--upsample", "0"]) == 0  # the 87 px face needs no upsampling: a quarter of the search
    result = np.asarray(Image.open(out))
    assert result.shape == data.astronaut().shape
    assert np.any(result[110:150, 200:245] != data.astronaut()[110:150, 200:245], axis=-1).mean() > 0.9


def test_a_folder_that_is_not_celeba_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photos").mkdir()
    assert cli(["train", "--data", str(tmp_path / "photos"), "--run-dir", str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert "is not a CelebA-format folder (no list_attr_celeba.txt)" in capsys.readouterr().err
    assert not any((tmp_path / "photos").iterdir())
