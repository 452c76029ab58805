"""The published model: a small CNN predicting non-sensitive face attributes.

The network is an nn.Sequential of named blocks, each holding exactly one parameterised layer, so
"the last k layers" is a suffix of the sequence and an update restricted to them can cache the
prefix's output. The block before the head is the embedding an attacker can probe.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

from veil.errors import InvalidArgument

EMBEDDING_BLOCK = "embedding"
HEAD_BLOCK = "head"


@dataclass(frozen=True)
class ClassifierSpec:
    """Architecture of the attribute classifier (recorded in the model card)."""

    image_size: int
    num_outputs: int
    channels: tuple[int, ...] = (16, 32, 64)
    embedding_dim: int = 64

    def __post_init__(self) -> None:
        if self.num_outputs < 1:
            raise InvalidArgument("a classifier needs at least one output attribute")
        if not self.channels or any(c < 1 for c in self.channels):
            raise InvalidArgument(f"channels must be positive, got {self.channels}")
        if self.embedding_dim < 1:
            raise InvalidArgument(f"embedding_dim must be positive, got {self.embedding_dim}")
        if self.image_size < 2 ** len(self.channels) or self.image_size % 2 ** len(self.channels):
            raise InvalidArgument(
                f"image_size {self.image_size} must be a multiple of {2 ** len(self.channels)} "
                f"(one 2x pooling per conv block)")

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierSpec:
        return cls(image_size=int(data["image_size"]), num_outputs=int(data["num_outputs"]),
                   channels=tuple(int(c) for c in data["channels"]),
                   embedding_dim=int(data["embedding_dim"]))


def build_classifier(spec: ClassifierSpec) -> nn.Sequential:
    """Conv blocks (conv, ReLU, 2x max-pool), an embedding (flatten, linear, ReLU), a linear head."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = 3
    for index, out_channels in enumerate(spec.channels, start=1):
        blocks[f"conv{index}"] = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        in_channels = out_channels
    side = spec.image_size // 2 ** len(spec.channels)
    blocks[EMBEDDING_BLOCK] = nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * side * side, spec.embedding_dim), nn.ReLU())
    blocks[HEAD_BLOCK] = nn.Linear(spec.embedding_dim, spec.num_outputs)
    return nn.Sequential(blocks)


def embed(model: nn.Sequential, images: torch.Tensor) -> torch.Tensor:
    """The embedding an attacker probes: every block but the head."""
    return model[:-1](images)


def images_to_tensor(images) -> torch.Tensor:
    """uint8 (N, H, W, 3) images -> float (N, 3, H, W) centred on zero, as the classifier expects."""
    tensor = torch.as_tensor(images)
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise InvalidArgument(f"expected images of shape (N, H, W, 3), got {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).sub_(0.5)
