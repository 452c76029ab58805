"""The ONNX Runtime path for the denoiser (the UNet, which is ~all of the sampling cost).

`export_denoiser` writes eps_theta(sample, timestep, condition) with a dynamic batch axis (the
example input has batch 2 so the exporter cannot specialise on 1). `OnnxDenoiser` runs it and is a
drop-in for the torch denoiser of `DiffusionAutoencoder` (`model.denoiser = OnnxDenoiser(...)`).
Parity with torch: max abs difference of eps below PARITY_ATOL (tests/test_diffusion_onnx.py).
On GPU nodes the `gpu` extra installs onnxruntime-gpu and the CUDA provider is used.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DModel

PARITY_ATOL = 1e-4
ONNX_FILE = "denoiser.onnx"


class _DenoiserGraph(torch.nn.Module):
    def __init__(self, unet: UNet2DModel) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, class_labels=condition).sample


def export_denoiser(unet: UNet2DModel, path: str | Path, embed_dim: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = unet.config.sample_size
    example = (torch.zeros(2, 3, size, size), torch.tensor([1, 1]), torch.zeros(2, embed_dim))
    tmp = path.with_name(path.name + ".tmp")
    graph = _DenoiserGraph(unet).eval().to("cpu", torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape asserts in diffusers
        torch.onnx.export(
            graph, example, str(tmp), input_names=["sample", "timestep", "condition"], output_names=["eps"],
            dynamic_axes={name: {0: "batch"} for name in ("sample", "timestep", "condition", "eps")},
            opset_version=17, dynamo=False,
        )
    tmp.replace(path)
    return path


def _fingerprint(unet: UNet2DModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


class OnnxDenoiser:
    """eps_theta through an ONNX Runtime session; tensors in and out stay torch tensors."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # ENABLE_ALL: the NCHWc layout transformer runs the convolutions (98% of the FLOPs) with
        # MLAS's blocked kernels: 4-17% less CPU time than EXTENDED at decode batch 16 (at batch
        # 1 its layout reorders cost ~15% instead); see docs/onnxruntime-cpu.md for the profile.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # Idle intra-op threads sleep instead of spinning: spinning burned ~11% more CPU for the
        # same work and lost wall time whenever other processes share the cores (a CPU-limited
        # pod, a shared host).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.providers = self.session.get_providers()

    @classmethod
    def for_unet(cls, unet: UNet2DModel, cache_dir: str | Path, embed_dim: int, device: str = "cpu") -> OnnxDenoiser:
        """Export once per set of weights into `cache_dir` (keyed by a weight fingerprint), then load."""
        path = Path(cache_dir) / _fingerprint(unet) / ONNX_FILE
        if not path.is_file():
            export_denoiser(unet, path, embed_dim)
        return cls(path, device)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        feeds = {
            "sample": sample.detach().to("cpu", torch.float32).numpy(),
            "timestep": timestep.detach().to("cpu", torch.int64).numpy(),
            "condition": condition.detach().to("cpu", torch.float32).numpy(),
        }
        eps = self.session.run(["eps"], feeds)[0]
        return torch.from_numpy(np.ascontiguousarray(eps)).to(sample.device)
