"""Tiny diffusion-autoencoder runs shared by the Diffusion-DP tests (seconds on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.data import generate_dataset
from veil.diffusion.train import TrainConfig, Trainer

TINY = dict(
    image_size=16,
    latent_dim=16,
    unet_channels=(32, 32),
    unet_layers_per_block=1,
    unet_attention=(False, True),
    encoder_channels=(8, 16, 16),
    classifier_channels=(8, 8, 8),
    batch_size=8,
    warmup_steps=2,
    confusion_start=2,
    log_every=2,
    checkpoint_every=1000,
    sampling={"steps": 4, "guidance": 2.0, "guidance_base": "source", "invert_fraction": 1.0},
)


def tiny_config(data_dir: Path, **overrides: object) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "data_dir": str(data_dir), "steps": 6, **overrides})


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("faces"), identities=12, per_identity=5, seed=3, workers=1)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for a few steps and exported (weights are meaningless, shapes are real)."""
    run = tmp_path_factory.mktemp("run")
    trainer = Trainer(tiny_config(tiny_faces), run, device="cpu")
    trainer.run()
    out = tmp_path_factory.mktemp("model") / "tiny"
    trainer.export(out, model_version="tiny-test")
    return out
