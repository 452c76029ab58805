"""Training of the diffusion autoencoder: checkpoints, resume, determinism, export/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fixtures_diffusion import tiny_config
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.diffusion.train import TrainConfig, Trainer
from veil.errors import InvalidArgument


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.nets.state_dict().items()}


def test_resume_continues_exactly_where_it_stopped(tiny_faces: Path, tmp_path: Path) -> None:
    straight = Trainer(tiny_config(tiny_faces), tmp_path / "a", device="cpu")
    straight.run()
    first = Trainer(tiny_config(tiny_faces), tmp_path / "b", device="cpu")
    first.run(until_step=3)
    resumed = Trainer(tiny_config(tiny_faces), tmp_path / "b", device="cpu")
    assert resumed.step == 3 and resumed.resumed_from is not None
    resumed.run()
    assert resumed.step == straight.step == 6
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_interrupted_checkpoint_is_ignored(tiny_faces: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tiny_faces), tmp_path, device="cpu")
    trainer.run(until_step=2)
    # A checkpoint folder without its trainer_state.json is what a kill mid-write would leave.
    (tmp_path / "checkpoints" / "step-0000009").mkdir()
    again = Trainer(tiny_config(tiny_faces), tmp_path, device="cpu")
    assert again.step == 2


def test_training_changes_weights_and_logs(tiny_faces: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tiny_faces), tmp_path, device="cpu")
    before = _weights(trainer)
    trainer.run()
    after = _weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    log = (tmp_path / "train_log.jsonl").read_text()
    assert '"loss"' in log and '"event": "stop"' in log


def test_export_roundtrip(tiny_model_dir: Path) -> None:
    model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    assert model.card.model_version == "tiny-test"
    assert model.attribute_names[0] == "Male"
    assert "No_Beard" in model.card.implied["Male"]
    assert (tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    z = model.encode(images)
    assert z.shape == (3, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.full((3,), 4.0))
    out = model.reconstruct(images)
    assert out.shape == images.shape and out.abs().max() <= 1


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown training config keys: stepz"):
        TrainConfig.from_dict({"stepz": 3})
