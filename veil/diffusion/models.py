"""The networks of the conditional diffusion autoencoder (DESIGN section 4, variant A).

* `SemanticEncoder`: image -> z_sem on the sphere of radius sqrt(d). The fixed norm matters: with
  an unbounded z the encoder can drown the attribute input by blowing its norm up.
* `Conditioner`: [z_sem, a, null] -> the vector added to the UNet's time embedding
  (UNet2DModel with class_embed_type="identity" and AdaGN "scale_shift" resnets, as in DiffAE).
* `AttributeClassifier`: clean image -> attribute logits; it supplies `a` at inference and
  ships with the model.
* `LatentAdversary`: tries to read attributes from z_sem during training (Fader-style); the
  encoder is trained to confuse it, so identity lives in z_sem and attributes in `a`.

Each shipped network is a diffusers ModelMixin, so it saves and loads with save_pretrained /
from_pretrained in diffusers' own safetensors format.
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F


def _conv_block(cin: int, cout: int, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
    )


class _ConvTrunk(nn.Module):
    """Conv blocks halving the resolution down to 4x4, flattened."""

    def __init__(self, image_size: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        levels = int(math.log2(image_size // 4))
        if image_size != 4 * 2**levels or len(channels) != levels + 1:
            raise ValueError(f"image_size {image_size} needs {levels + 1} channel entries, got {len(channels)}")
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1)]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [_conv_block(cin, cout), nn.AvgPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.out_features = channels[-1] * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


class SemanticEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, image_size: int = 32, latent_dim: int = 64, channels: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(image_size, tuple(channels))
        self.head = nn.Linear(self.trunk.out_features, latent_dim)

    @property
    def radius(self) -> float:
        return math.sqrt(self.config.latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images in [-1, 1], (B, 3, H, W) -> z_sem (B, d) with norm sqrt(d)."""
        return project_to_sphere(self.head(self.trunk(images)), self.radius)


def project_to_sphere(z: torch.Tensor, radius: float) -> torch.Tensor:
    return z * (radius / z.norm(dim=-1, keepdim=True).clamp_min(1e-6))


class Conditioner(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, latent_dim: int = 64, num_attributes: int = 10, embed_dim: int = 256, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_attributes + 1, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, embed_dim),
        )

    def forward(self, z_sem: torch.Tensor, attributes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        """attributes in [-1, 1] (B, A); null (B,) 1 where the attributes are dropped (zeroed)."""
        null = null.to(attributes.dtype).unsqueeze(-1)
        return self.net(torch.cat([z_sem, attributes * (1 - null), null], dim=-1))


class AttributeClassifier(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, image_size: int = 32, num_attributes: int = 10, channels: tuple[int, ...] = (32, 64, 96, 128)) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(image_size, tuple(channels))
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(self.trunk.out_features, num_attributes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images))


class LatentAdversary(nn.Module):
    """Training only: predicts attributes from z_sem (its gradient never reaches the encoder)."""

    def __init__(self, latent_dim: int, num_attributes: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, num_attributes),
        )

    def forward(self, z_sem: torch.Tensor) -> torch.Tensor:
        return self.net(z_sem)


def confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the adversary's prediction against 1/2: minimal when z_sem says nothing."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5))


def build_unet(image_size: int, block_out_channels: tuple[int, ...], layers_per_block: int,
               attention_levels: tuple[bool, ...]) -> UNet2DModel:
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=up,
        class_embed_type="identity",
        resnet_time_scale_shift="scale_shift",
        attention_head_dim=32,
        norm_num_groups=32,
    )
