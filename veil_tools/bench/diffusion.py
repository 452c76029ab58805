"""Decode throughput of the anonymizer: eager torch vs ONNX Runtime, batch 1 and 16.

Both runtimes decode the same start points with the same conditions (the guided sampler of the
model card), alternating rounds so machine noise hits both alike; the table reports the median
images/s of each and their ratio against the issue's bar (ONNX >= 1.5x eager).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from veil.diffusion import DEFAULT_MODEL_DIR
from veil.diffusion.pipeline import DiffusionAutoencoder, TorchDenoiser

BAR = 1.5


def _decode_rate(model: DiffusionAutoencoder, batch: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    size, d = model.image_size, model.encoder.config.latent_dim
    z = torch.randn(batch, d, generator=gen)
    z = z * (model.encoder.radius / z.norm(dim=1, keepdim=True))
    attrs = torch.where(torch.rand(batch, len(model.attribute_names), generator=gen) < 0.5, 1.0, -1.0)
    cond, base = model.condition(z, attrs), model.condition(z, -attrs)
    x = torch.randn(batch, 3, size, size, generator=gen)
    start = time.perf_counter()
    model.decode(x, cond, base, model.card.sampling)
    return batch / (time.perf_counter() - start)


def run(model_dir: Path, batches: tuple[int, ...], rounds: int) -> list[dict[str, float]]:
    model = DiffusionAutoencoder.from_pretrained(model_dir)
    eager = TorchDenoiser(model.unet)
    with tempfile.TemporaryDirectory() as cache:
        model.use_onnxruntime(cache)
        onnx = model.denoiser
        rows = []
        for batch in batches:
            rates: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            for r in range(rounds + 1):  # round 0 warms both up and is discarded
                for name, denoiser in (("torch", eager), ("onnxruntime", onnx)):
                    model.denoiser = denoiser
                    rate = _decode_rate(model, batch, seed=r)
                    if r:
                        rates[name].append(rate)
            t, o = statistics.median(rates["torch"]), statistics.median(rates["onnxruntime"])
            rows.append({"batch": batch, "torch_images_per_s": t, "onnx_images_per_s": o, "ratio": o / t})
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"decode throughput, {torch.get_num_threads()} threads, model {args.model}")
    print(f"{'batch':>5} {'torch img/s':>12} {'onnx img/s':>11} {'ratio':>6}  bar >= {BAR}")
    status = 0
    for row in run(args.model, (1, 16), args.rounds):
        ok = row["ratio"] >= BAR
        status |= 0 if ok else 1
        print(f"{row['batch']:>5} {row['torch_images_per_s']:>12.2f} {row['onnx_images_per_s']:>11.2f} "
              f"{row['ratio']:>6.2f}  {'PASS' if ok else 'FAIL'}")
    return status


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
