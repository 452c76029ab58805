"""Training of the conditional diffusion autoencoder, with checkpoint/resume.

One step (DESIGN section 4, variant A):

* z = E(x0) on the sphere; a = labels, dropped to null with probability `p_uncond`;
* diffusion loss: || eps - eps_theta(x_t, t, MLP([z, a, null])) ||^2, cosine schedule;
* confusion loss for the encoder: cross-entropy of the adversary's output on z against 1/2;
* the adversary trains on a detached z (its own optimizer) to read attributes from it;
* the attribute classifier (shipped; gives `a` at inference) trains on the clean images.

A run folder holds ``train_config.json``, ``train_log.jsonl`` and ``checkpoints/step-N/``; each
checkpoint is written to a temporary folder and renamed, so a run killed at any moment resumes
from its last complete checkpoint. The state (weights, EMA, optimiser moments, the batch
generator) is stored as safetensors shards of bounded size plus ``trainer_state.json``, so a
resumed run continues exactly where it stopped: same batches, same result.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from veil.data import load_celeba
from veil.data.celeba import ATTR_FILE
from veil.data.synth import GENERATOR_VERSION, generate_dataset
from veil.diffusion.implied import attribute_statistics
from veil.diffusion.models import (AttributeClassifier, Conditioner, LatentAdversary, SemanticEncoder, build_unet,
                                   confusion_loss)
from veil.diffusion.pipeline import DiffusionAutoencoder, DiffusionModelCard, SamplingConfig
from veil.errors import InvalidArgument, quoted
from veil.files import atomic_directory

SHARD_BYTES = 12 * 1024 * 1024
KEEP_CHECKPOINTS = 2


@dataclass
class TrainConfig:
    # data: a CelebA-format folder; if it holds no data set and generate_data is set, a synthetic
    # one is generated there (a real folder, e.g. CelebA, is trained on with generate_data false).
    data_dir: str = "data/synth-faces"
    generate_data: bool = True
    synth_identities: int = 1200
    synth_per_identity: int = 20
    synth_seed: int = 0
    image_size: int = 32
    # model
    latent_dim: int = 64
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1
    unet_attention: tuple[bool, ...] = (False, False, True)
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    classifier_channels: tuple[int, ...] = (32, 64, 96, 128)
    num_train_timesteps: int = 1000
    # optimisation
    steps: int = 20000
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    confusion_weight: float = 1.0
    confusion_start: int = 500
    adversary_lr: float = 1e-3
    classifier_weight: float = 1.0
    seed: int = 0
    amp_bf16: bool = True  # CUDA only
    # bookkeeping
    log_every: int = 50
    checkpoint_every: int = 1000
    checkpoint_every_seconds: float = 600.0
    sampling: dict[str, Any] = field(default_factory=lambda: asdict(SamplingConfig()))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise InvalidArgument(f"unknown training config keys: {', '.join(sorted(unknown))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_size(self, image_size: int) -> TrainConfig:
        """This config at another resolution: the encoder and classifier take one level per
        doubling of the side (4 px at the bottom), the added levels as wide as the last one."""
        levels = image_size.bit_length() - 3  # 4 * 2**levels == image_size
        if not 16 <= image_size <= 512 or image_size != 4 * 2**levels:
            raise InvalidArgument(f"image size must be a power of two in 16..512, got {image_size}")

        def resized(channels: tuple[int, ...]) -> tuple[int, ...]:
            return (channels + (channels[-1],) * levels)[:levels + 1]

        return replace(self, image_size=image_size, encoder_channels=resized(self.encoder_channels),
                       classifier_channels=resized(self.classifier_channels))


class _Nets(torch.nn.Module):
    """Every trained network under one module, so state dicts and EMA cover them together."""

    def __init__(self, cfg: TrainConfig, num_attributes: int) -> None:
        super().__init__()
        self.unet = build_unet(cfg.image_size, tuple(cfg.unet_channels), cfg.unet_layers_per_block,
                               tuple(cfg.unet_attention))
        embed_dim = self.unet.config.block_out_channels[0] * 4
        self.encoder = SemanticEncoder(cfg.image_size, cfg.latent_dim, tuple(cfg.encoder_channels))
        self.conditioner = Conditioner(cfg.latent_dim, num_attributes, embed_dim)
        self.attribute_classifier = AttributeClassifier(cfg.image_size, num_attributes, tuple(cfg.classifier_channels))


def make_scheduler(num_train_timesteps: int) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def ensure_dataset(cfg: TrainConfig) -> Path:
    root = Path(cfg.data_dir)
    if not (root / ATTR_FILE).is_file():
        if not cfg.generate_data:
            raise InvalidArgument(f"{quoted(str(root))} is not a CelebA-format folder (no {ATTR_FILE})")
        generate_dataset(root, cfg.synth_identities, cfg.synth_per_identity, cfg.synth_seed)
    return root


def ensure_unseen_faces(cfg: TrainConfig, identities: int) -> Path:
    """One face each of `identities` people the model never saw: the training generator with
    another seed (the leakage audit's probes). Kept beside the training data."""
    seed = cfg.synth_seed + 1
    root = Path(cfg.data_dir).with_name(f"{Path(cfg.data_dir).name}-unseen-s{seed}-n{identities}")
    if not (root / "list_attr_celeba.txt").is_file():
        generate_dataset(root, identities, 1, seed, test_per_identity=0)
    return root


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    with (run_dir / "train_log.jsonl").open("a") as handle:
        handle.write(line + "\n")


class Trainer:
    """Owns the networks, optimisers, EMA and data of one run folder."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        data_root = ensure_dataset(cfg)
        data = load_celeba(data_root, size=cfg.image_size).split("train")
        self.data = data
        self.images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.from_numpy(data.attributes.astype(np.float32)).to(self.device)
        self.attribute_names = list(data.attribute_names)

        self.nets = _Nets(cfg, len(self.attribute_names)).to(self.device)
        self.ema = _Nets(cfg, len(self.attribute_names)).to(self.device).requires_grad_(False)
        self.ema.load_state_dict(self.nets.state_dict())
        self.adversary = LatentAdversary(cfg.latent_dim, len(self.attribute_names)).to(self.device)
        self.optimizer = torch.optim.AdamW(self.nets.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.adv_optimizer = torch.optim.AdamW(self.adversary.parameters(), lr=cfg.adversary_lr)
        self.scheduler = make_scheduler(cfg.num_train_timesteps)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device)
        # Batch indices on the CPU, noise on the device; both states are checkpointed.
        self.batches = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.noise = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.step = 0
        self.resumed_from: str | None = None
        self._stop_requested = False
        (self.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self._resume()

    # -- checkpoints -----------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("nets", self.nets), ("ema", self.ema), ("adversary", self.adversary)):
            for key, value in module.state_dict().items():
                tensors[f"{prefix}.{key}"] = value
        for prefix, opt in (("opt", self.optimizer), ("adv_opt", self.adv_optimizer)):
            for index, slot in opt.state_dict()["state"].items():
                for key, value in slot.items():
                    if torch.is_tensor(value):
                        tensors[f"{prefix}.{index}.{key}"] = value.reshape(-1) if value.dim() == 0 else value
        tensors["batches.rng"] = self.batches.get_state()
        tensors["noise.rng"] = self.noise.get_state()
        tensors["global.rng"] = torch.get_rng_state()  # dropout
        if self.device.type == "cuda":
            tensors["global.cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def checkpoint(self) -> Path:
        final = self.run_dir / "checkpoints" / f"step-{self.step:07d}"
        with atomic_directory(final) as tmp:
            shard: dict[str, torch.Tensor] = {}
            size, count = 0, 0
            for key, tensor in self._state_tensors().items():
                nbytes = tensor.numel() * tensor.element_size()
                if shard and size + nbytes > SHARD_BYTES:
                    save_file(shard, str(tmp / f"state-{count:03d}.safetensors"))
                    shard, size, count = {}, 0, count + 1
                shard[key] = tensor
                size += nbytes
            save_file(shard, str(tmp / f"state-{count:03d}.safetensors"))
            meta = {
                "step": self.step,
                "config": self.cfg.to_dict(),
                "optimizer_groups": self.optimizer.state_dict()["param_groups"],
                "adv_optimizer_groups": self.adv_optimizer.state_dict()["param_groups"],
                "optimizer_steps": {
                    "opt": {str(i): float(s["step"]) for i, s in self.optimizer.state_dict()["state"].items()},
                    "adv_opt": {str(i): float(s["step"]) for i, s in self.adv_optimizer.state_dict()["state"].items()},
                },
                "time": time.time(),
            }
            (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
        for old in sorted(final.parent.glob("step-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        found = sorted((self.run_dir / "checkpoints").glob("step-*"))
        complete = [p for p in found if (p / "trainer_state.json").is_file()]
        return complete[-1] if complete else None

    def _resume(self) -> None:
        path = self.latest_checkpoint()
        if path is None:
            return
        meta = json.loads((path / "trainer_state.json").read_text())
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(path.glob("state-*.safetensors")):
            tensors.update(load_file(str(shard)))
        for prefix, module in (("nets", self.nets), ("ema", self.ema), ("adversary", self.adversary)):
            module.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        for prefix, opt, groups in (("opt", self.optimizer, meta["optimizer_groups"]),
                                    ("adv_opt", self.adv_optimizer, meta["adv_optimizer_groups"])):
            state: dict[int, dict[str, Any]] = {}
            for index, step in meta["optimizer_steps"][prefix].items():
                slot: dict[str, Any] = {"step": torch.tensor(step)}
                for key in ("exp_avg", "exp_avg_sq"):
                    slot[key] = tensors[f"{prefix}.{index}.{key}"].to(self.device)
                state[int(index)] = slot
            opt.load_state_dict({"state": state, "param_groups": groups})
        self.batches.set_state(tensors["batches.rng"])
        self.noise.set_state(tensors["noise.rng"])
        torch.set_rng_state(tensors["global.rng"])
        if self.device.type == "cuda" and "global.cuda_rng" in tensors:
            torch.cuda.set_rng_state(tensors["global.cuda_rng"], self.device)
        self.step = int(meta["step"])
        self.resumed_from = str(path)
        _log(self.run_dir, {"event": "resumed", "step": self.step, "checkpoint": str(path)})

    # -- training --------------------------------------------------------------------------
    def _lr(self) -> float:
        # Linear warm-up, then constant (with EMA), as DDPM: a run stopped at any step is the
        # same as one configured to end there, so `--until-step N` reproduces it exactly.
        return self.cfg.lr * min(1.0, (self.step + 1) / max(1, self.cfg.warmup_steps))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, self.images.shape[0], (self.cfg.batch_size,), generator=self.batches)
        index = index.to(self.device)
        images = self.images[index].float() / 127.5 - 1.0
        return images, self.labels[index]

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.nets.train()
        images, labels = self._batch()
        n = images.shape[0]
        gen, dev = self.noise, self.device
        t = torch.randint(0, cfg.num_train_timesteps, (n,), generator=gen, device=dev)
        noise = torch.randn(images.shape, generator=gen, device=dev)
        null = (torch.rand(n, generator=gen, device=dev) < cfg.p_uncond).float()
        alpha = self.alphas_cumprod[t].view(n, 1, 1, 1)
        noisy = alpha.sqrt() * images + (1 - alpha).sqrt() * noise
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()

        amp = self.device.type == "cuda" and cfg.amp_bf16
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            z = self.nets.encoder(images)
            cond = self.nets.conditioner(z, labels, null)
            eps = self.nets.unet(noisy, t, class_labels=cond).sample
            diffusion = F.mse_loss(eps.float(), noise)
            logits = self.nets.attribute_classifier(images)
            classifier = F.binary_cross_entropy_with_logits(logits.float(), (labels + 1) / 2)
            adv_on_z = self.adversary(z)
            confusion = confusion_loss(adv_on_z.float())
        weight = cfg.confusion_weight if self.step >= cfg.confusion_start else 0.0
        loss = diffusion + weight * confusion + cfg.classifier_weight * classifier
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.nets.parameters(), cfg.grad_clip)
        self.optimizer.step()

        adv_logits = self.adversary(z.detach().float())
        adversary = F.binary_cross_entropy_with_logits(adv_logits, (labels + 1) / 2)
        self.adv_optimizer.zero_grad(set_to_none=True)
        adversary.backward()
        self.adv_optimizer.step()

        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.nets.parameters()), 1 - decay)
        self.step += 1
        # Tensors, not floats: reading them back every step would stall the GPU.
        return {
            "loss": diffusion.detach(),
            "confusion": confusion.detach(),
            "adversary": adversary.detach(),
            "adversary_acc": ((adv_logits > 0) == (labels > 0)).float().mean(),
            "classifier_acc": ((logits.detach() > 0) == (labels > 0)).float().mean(),
            "grad_norm": grad_norm.detach(),
        }

    def request_stop(self, *_: Any) -> None:
        self._stop_requested = True

    def run(self, time_budget: float | None = None, until_step: int | None = None) -> Path | None:
        """Train until `cfg.steps` (or `until_step`), the time budget, or SIGTERM; checkpoint on exit."""
        target = min(self.cfg.steps, until_step) if until_step is not None else self.cfg.steps
        start = time.monotonic()
        last_ckpt = start
        running: dict[str, torch.Tensor] = {}
        _log(self.run_dir, {"event": "start", "step": self.step, "target": target, "device": str(self.device),
                            "train_images": int(self.images.shape[0])})
        saved: Path | None = None
        while self.step < target and not self._stop_requested:
            if time_budget is not None and time.monotonic() - start > time_budget:
                break
            metrics = self.train_step()
            for k, v in metrics.items():
                running[k] = running[k] + v if k in running else v
            if self.step % self.cfg.log_every == 0:
                record: dict[str, Any] = {k: round(v.item() / self.cfg.log_every, 5) for k, v in running.items()}
                if not all(math.isfinite(v) for v in record.values()):
                    # Checked here, not every step: reading the loss back each step stalls the GPU.
                    raise FloatingPointError(f"non-finite training metrics by step {self.step}: {record}")
                record.update(step=self.step, lr=self._lr(), elapsed=round(time.monotonic() - start, 1))
                _log(self.run_dir, record)
                running = {}
            now = time.monotonic()
            if self.step % self.cfg.checkpoint_every == 0 or now - last_ckpt > self.cfg.checkpoint_every_seconds:
                saved = self.checkpoint()
                last_ckpt = now
        if saved is None or not saved.name.endswith(f"{self.step:07d}"):
            saved = self.checkpoint()
        _log(self.run_dir, {"event": "stop", "step": self.step, "checkpoint": str(saved)})
        return saved

    # -- export ----------------------------------------------------------------------------
    def export(self, out_dir: str | Path, model_version: str) -> DiffusionAutoencoder:
        """Write the shippable model (EMA weights, fp16 safetensors) with its card and config."""
        cfg = self.cfg
        reproduce = (f"veil train --config {Path(out_dir) / 'train_config.json'} --run-dir runs/{model_version} "
                     f"--until-step {self.step} --export {out_dir} --model-version {model_version}")
        card = DiffusionModelCard(
            model_version=model_version,
            attribute_names=self.attribute_names,
            image_size=cfg.image_size,
            sampling=SamplingConfig(**cfg.sampling),
            training={"config": cfg.to_dict(), "steps_done": self.step, "device": str(self.device)},
            data={"source": "synthetic" if cfg.generate_data else "celeba-format folder",
                  **({"generator": GENERATOR_VERSION} if cfg.generate_data else {}),
                  "fingerprint": self.data.fingerprint(), "train_images": int(self.images.shape[0]),
                  "root": str(self.data.root)},
            reproduce=reproduce,
            **attribute_statistics(self.data.attributes, self.attribute_names),
        )
        nets = {name: getattr(self.ema, name) for name in ("unet", "encoder", "conditioner", "attribute_classifier")}
        model = DiffusionAutoencoder(scheduler=make_scheduler(cfg.num_train_timesteps), card=card, **nets)
        model.save_pretrained(out_dir)
        (Path(out_dir) / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        return model


def train_main(config: TrainConfig, run_dir: Path, device: str | None, time_budget: float | None,
               until_step: int | None, export_to: Path | None, model_version: str) -> int:
    trainer = Trainer(config, run_dir, device)
    signal.signal(signal.SIGTERM, trainer.request_stop)
    trainer.run(time_budget=time_budget, until_step=until_step)
    if export_to is not None:
        trainer.export(export_to, model_version)
        print(f"exported {model_version} to {export_to}", file=sys.stderr)
    return 0

