"""The ONNX Runtime denoiser matches torch (dynamic batch axis) and drives the same pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.onnx import ONNX_FILE, PARITY_ATOL, OnnxDenoiser
from veil.diffusion.pipeline import DiffusionAutoencoder, TorchDenoiser
from veil.privacy import PrivacySettings


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> DiffusionAutoencoder:
    return DiffusionAutoencoder.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("batch", [1, 5, 16])
def test_onnx_matches_torch_for_any_batch(model: DiffusionAutoencoder, tmp_path: Path, batch: int) -> None:
    onnx = OnnxDenoiser.for_unet(model.unet, tmp_path, embed_dim=model.conditioner.config.embed_dim)
    eager = TorchDenoiser(model.unet)
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, 16, 16, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    c = torch.randn(batch, model.conditioner.config.embed_dim, generator=gen)
    with torch.no_grad():
        diff = (onnx(x, t, c) - eager(x, t, c)).abs().max().item()
    assert diff < PARITY_ATOL, diff


def test_export_is_cached_per_weights(model: DiffusionAutoencoder, tmp_path: Path) -> None:
    OnnxDenoiser.for_unet(model.unet, tmp_path, embed_dim=model.conditioner.config.embed_dim)
    files = list(tmp_path.rglob(ONNX_FILE))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    OnnxDenoiser.for_unet(model.unet, tmp_path, embed_dim=model.conditioner.config.embed_dim)
    assert files[0].stat().st_mtime_ns == stamp


def test_pipeline_on_onnx_gives_the_torch_images(tiny_model_dir: Path, tiny_faces: Path, tmp_path: Path) -> None:
    from veil.data import load_celeba

    faces = list(load_celeba(tiny_faces, size=16).images[:2])
    torch_model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    onnx_model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    onnx_model.use_onnxruntime(tmp_path)
    budget = PrivacySettings.explicit(["Male"], torch_model.attribute_names, {"Male": 1.0})
    a = Anonymizer(torch_model).anonymize(faces, budget, candidates=2, seed=3)
    b = Anonymizer(onnx_model).anonymize(faces, budget, candidates=2, seed=3)
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            assert np.abs(x.image.astype(int) - y.image.astype(int)).max() <= 2
