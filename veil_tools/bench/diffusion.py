"""Decode throughput of the anonymizer: eager torch vs ONNX Runtime, batch 1 and 16.

Both runtimes decode the same start points with the same conditions (the guided sampler of the
model card), alternating rounds so machine noise hits both alike; the table reports the median
images/s of each and their ratio against the issue's bar (ONNX >= 1.5x eager). The ratio's
samples are per round (the two runtimes of one round ran back to back), so load that comes and
goes between rounds moves both sides of a sample alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from veil_tools.bench.record import Figure, figure
from veil.diffusion import DEFAULT_MODEL_DIR
from veil.diffusion.pipeline import DiffusionAutoencoder, SamplingConfig, TorchDenoiser

BAR = 1.5


def _decode_rate(model: DiffusionAutoencoder, batch: int, seed: int, sampling: SamplingConfig) -> float:
    gen = torch.Generator().manual_seed(seed)
    size, d = model.image_size, model.encoder.config.latent_dim
    z = torch.randn(batch, d, generator=gen)
    z = z * (model.encoder.radius / z.norm(dim=1, keepdim=True))
    attrs = torch.where(torch.rand(batch, len(model.attribute_names), generator=gen) < 0.5, 1.0, -1.0)
    cond, base = model.condition(z, attrs), model.condition(z, -attrs)
    x = torch.randn(batch, 3, size, size, generator=gen)
    device = model.device
    start = time.perf_counter()
    model.decode(x.to(device), cond.to(device), base.to(device), sampling)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch / (time.perf_counter() - start)


def measure(model_dir: Path, batches: tuple[int, ...], rounds: int, device: str = "cpu",
            steps: int | None = None) -> dict[int, dict[str, list[float]]]:
    """batch -> {"torch": images/s per round, "onnxruntime": likewise}, the two interleaved."""
    model = DiffusionAutoencoder.from_pretrained(model_dir, device=device)
    sampling = model.card.sampling if steps is None else replace(model.card.sampling, steps=steps)
    eager = TorchDenoiser(model.unet)
    with tempfile.TemporaryDirectory() as cache:
        model.use_onnxruntime(cache)
        onnx = model.denoiser
        rates: dict[int, dict[str, list[float]]] = {}
        for batch in batches:
            rates[batch] = {"torch": [], "onnxruntime": []}
            for r in range(rounds + 1):  # round 0 warms both up and is discarded
                for name, denoiser in (("torch", eager), ("onnxruntime", onnx)):
                    model.denoiser = denoiser
                    rate = _decode_rate(model, batch, seed=r, sampling=sampling)
                    if r:
                        rates[batch][name].append(rate)
    return rates


def run(model_dir: Path, batches: tuple[int, ...], rounds: int) -> list[dict[str, float]]:
    rows = []
    for batch, rates in measure(model_dir, batches, rounds).items():
        t, o = statistics.median(rates["torch"]), statistics.median(rates["onnxruntime"])
        rows.append({"batch": batch, "torch_images_per_s": t, "onnx_images_per_s": o, "ratio": o / t})
    return rows


def figures(model_dir: Path, batches: tuple[int, ...], rounds: int, device: str,
            steps: int | None) -> list[Figure]:
    """The harness's decode section: images/s of each runtime and their per-round ratio."""
    out = []
    for batch, rates in measure(model_dir, batches, rounds, device, steps).items():
        ratios = [o / t for t, o in zip(rates["torch"], rates["onnxruntime"], strict=True)]
        out += [figure(f"decode.batch{batch}.torch", "images/s", "higher", rates["torch"]),
                figure(f"decode.batch{batch}.onnxruntime", "images/s", "higher", rates["onnxruntime"]),
                figure(f"decode.batch{batch}.ratio", "onnx/torch", "higher", ratios)]
    return out


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
