"""`DiffusionAutoencoder`: encode, invert, decode (DESIGN section 4, variant A).

Decoding uses classifier-free guidance on the attribute input. Two bases are offered:

* ``"null"``: eps = eps(z, null) + w (eps(z, a') - eps(z, null)) - Ho & Salimans;
* ``"source"``: eps = eps(z, a) + w (eps(z, a') - eps(z, a)) where `a` is the condition the image
  was inverted with. With no edit (a' = a) this is exactly the inversion's own model, and w
  amplifies only what the edit changed.

Either way a level-0 reconstruction is decoded without guidance (veil.diffusion.anonymize).

A model folder is laid out like a diffusers pipeline: one sub-folder per network
(``unet/``, ``encoder/``, ``conditioner/``, ``attribute_classifier/``) in diffusers' safetensors
format, ``scheduler/scheduler_config.json``, and ``model_card.json`` with the attribute names,
sampling defaults, training config, data version and measured metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DModel

from veil.diffusion.models import AttributeClassifier, Conditioner, SemanticEncoder
from veil.errors import InvalidArgument, NotFound, quoted
from veil.files import atomic_directory
from veil.privacy.guarantee import GUIDANCE_BASES

CARD_FILE = "model_card.json"
COMPONENTS = {
    "unet": UNet2DModel,
    "encoder": SemanticEncoder,
    "conditioner": Conditioner,
    "attribute_classifier": AttributeClassifier,
}

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, step, total): called once per diffusion step ("invert" / "decode")."""


class Denoiser(Protocol):
    """eps_theta(x_t, t, c): the UNet in torch, or its ONNX Runtime export."""

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor: ...


class TorchDenoiser:
    def __init__(self, unet: UNet2DModel) -> None:
        self.unet = unet

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, class_labels=condition).sample


@dataclass
class SamplingConfig:
    """How images are inverted and decoded; stored in the model card, overridable per call."""

    steps: int = 20
    guidance: float = 3.0
    # "source": guidance away from the original's predicted attributes (no image-level guarantee,
    # veil.privacy.guarantee); "null": away from the null condition.
    guidance_base: str = "source"
    # 1.0: full DDIM inversion to x_T. Edits need most of it: on the shipped model (null guidance)
    # 0.8 left Male unrealised in a quarter of the flips; 0.9 with guidance 6 realised nearly all
    # and kept the other attributes closer than 1.0 did.
    invert_fraction: float = 1.0

    def validate(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise InvalidArgument(f"sampling steps must be in 1..1000, got {self.steps}")
        if not 0.0 <= self.guidance <= 20.0:
            raise InvalidArgument(f"guidance must be in 0..20, got {self.guidance}")
        if self.guidance_base not in GUIDANCE_BASES:
            raise InvalidArgument(f"guidance_base must be 'source' or 'null', got {quoted(self.guidance_base)}")
        if not 0.0 < self.invert_fraction <= 1.0:
            raise InvalidArgument(f"invert_fraction must be in (0, 1], got {self.invert_fraction}")


@dataclass
class DiffusionModelCard:
    model_version: str
    attribute_names: list[str]
    image_size: int
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Attributes to protect together with a key attribute because a value of theirs implies it.
    implied: dict[str, list[str]] = field(default_factory=dict)
    # P(attribute = +1 | key attribute = released value), for re-sampling implied attributes.
    conditional_rates: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DiffusionModelCard:
        raw = dict(raw)
        raw["sampling"] = SamplingConfig(**raw.get("sampling", {}))
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DiffusionAutoencoder:
    """The conditional diffusion autoencoder: all networks, the schedulers and the card."""

    def __init__(self, unet: UNet2DModel, encoder: SemanticEncoder, conditioner: Conditioner,
                 attribute_classifier: AttributeClassifier, scheduler: DDIMScheduler, card: DiffusionModelCard) -> None:
        self.unet = unet
        self.encoder = encoder
        self.conditioner = conditioner
        self.attribute_classifier = attribute_classifier
        self.scheduler = scheduler
        self.inverse_scheduler = DDIMInverseScheduler.from_config(scheduler.config)
        self.card = card
        self.denoiser: Denoiser = TorchDenoiser(unet)
        for net in self.networks().values():
            net.eval().requires_grad_(False)

    # -- construction, persistence ---------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self, name) for name in COMPONENTS}

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def attribute_names(self) -> list[str]:
        return self.card.attribute_names

    @property
    def image_size(self) -> int:
        return self.card.image_size

    def to(self, device: str | torch.device) -> DiffusionAutoencoder:
        for net in self.networks().values():
            net.to(device)
        return self

    def save_pretrained(self, path: str | Path, half: bool = True) -> None:
        """Write the model folder atomically (a temporary sibling renamed into place)."""
        with atomic_directory(path) as tmp:
            for name, net in self.networks().items():
                state_dtype = next(net.parameters()).dtype
                if half:
                    net.to(torch.float16)
                try:
                    net.save_pretrained(tmp / name, safe_serialization=True)
                finally:
                    net.to(state_dtype)
            self.scheduler.save_pretrained(tmp / "scheduler")
            (tmp / CARD_FILE).write_text(json.dumps(self.card.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> DiffusionAutoencoder:
        path = Path(path)
        if not (path / CARD_FILE).is_file():
            raise NotFound(f"{path}: not a model folder (no {CARD_FILE})")
        card = DiffusionModelCard.from_dict(json.loads((path / CARD_FILE).read_text()))
        # low_cpu_mem_usage needs `accelerate`; these nets are small enough to load plainly.
        nets = {name: kind.from_pretrained(path / name, torch_dtype=torch.float32, low_cpu_mem_usage=False)
                for name, kind in COMPONENTS.items()}
        scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        return cls(scheduler=scheduler, card=card, **nets).to(device)  # type: ignore[arg-type]

    def use_onnxruntime(self, cache_dir: str | Path) -> None:
        """Run the denoiser through ONNX Runtime (exported once per weights into `cache_dir`)."""
        from veil.diffusion.onnx import OnnxDenoiser

        self.denoiser = OnnxDenoiser.for_unet(self.unet, cache_dir, self.conditioner.config.embed_dim, str(self.device))

    # -- the model's parts -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    @torch.no_grad()
    def attribute_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.attribute_classifier(images)

    @torch.no_grad()
    def condition(self, z_sem: torch.Tensor, attributes: torch.Tensor, null: bool = False) -> torch.Tensor:
        flag = torch.full((z_sem.shape[0],), float(null), device=z_sem.device)
        return self.conditioner(z_sem, attributes, flag)

    def _timesteps(self, steps: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.scheduler.set_timesteps(steps, device=self.device)
        self.inverse_scheduler.set_timesteps(steps, device=self.device)
        count = max(1, round(steps * fraction))
        # Inversion climbs the first `count` levels; decoding walks the same levels back down.
        return self.inverse_scheduler.timesteps[:count], self.scheduler.timesteps[steps - count:]

    @torch.no_grad()
    def invert(self, images: torch.Tensor, condition: torch.Tensor, sampling: SamplingConfig,
               progress: ProgressFn | None = None) -> torch.Tensor:
        """Deterministic DDIM inversion of clean images (in [-1, 1]) up to the start level."""
        up, _ = self._timesteps(sampling.steps, sampling.invert_fraction)
        x = images
        for i, t in enumerate(up):
            eps = self.denoiser(x, t.expand(x.shape[0]), condition)
            x = self.inverse_scheduler.step(eps, int(t), x).prev_sample
            if progress:
                progress("invert", i + 1, len(up))
        return x

    @torch.no_grad()
    def decode(self, x_start: torch.Tensor, condition: torch.Tensor, base: torch.Tensor | None,
               sampling: SamplingConfig, progress: ProgressFn | None = None) -> torch.Tensor:
        """DDIM decoding from the start level with guidance `w` towards `condition`.

        `base` is the guidance's other condition (the source condition, or the null condition);
        None, or w == 1, decodes with `condition` alone.
        """
        _, down = self._timesteps(sampling.steps, sampling.invert_fraction)
        guided = base is not None and sampling.guidance != 1.0
        x = x_start
        n = x.shape[0]
        for i, t in enumerate(down):
            if guided:
                both = self.denoiser(torch.cat([x, x]), t.expand(2 * n), torch.cat([condition, base]))
                eps_c, eps_b = both[:n], both[n:]
                eps = eps_b + sampling.guidance * (eps_c - eps_b)
            else:
                eps = self.denoiser(x, t.expand(n), condition)
            x = self.scheduler.step(eps, int(t), x).prev_sample
            if progress:
                progress("decode", i + 1, len(down))
        return x.clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, sampling: SamplingConfig | None = None) -> torch.Tensor:
        """Level 0: invert and decode with the image's own latent and predicted attributes."""
        sampling = sampling or self.card.sampling
        z = self.encode(images)
        attrs = torch.where(self.attribute_logits(images) >= 0, 1.0, -1.0)
        cond = self.condition(z, attrs)
        return self.decode(self.invert(images, cond, sampling), cond, None, sampling)
