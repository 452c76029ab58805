"""The owner's own attacker: multi-label logistic regression on pixels.

Deliberately not the evaluation's attacker (veil.diffusion.evaluate trains CNNs): the owner is a
customer checking releases with the tool at hand. It is trained on clean synthetic faces drawn
with a seed and identities of its own (never the model's training identities, never the probes),
and cached as .npz keyed by everything that determines it, so repeated runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from veil.data.synth import ATTRIBUTES, iter_samples

# Far from the model's training identities (0..1499 of seed 0) and from the probes.
ATTACKER_FIRST_IDENTITY = 200_000


@dataclass(frozen=True)
class AttackerSpec:
    image_size: int
    identities: int = 600
    per_identity: int = 4
    seed: int = 11
    steps: int = 400
    weight_decay: float = 1e-3

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def pixels(images: np.ndarray) -> np.ndarray:
    """[n, h, w, 3] uint8 -> [n, h*w*3] floats in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


class OwnerAttacker:
    """P(attribute is present) for each of ATTRIBUTES, from the pixels of an image."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                 train_accuracy: dict[str, float]) -> None:
        self.weights, self.bias, self.mean = weights, bias, mean
        self.train_accuracy = train_accuracy

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """[n, len(ATTRIBUTES)] probabilities for [n, h, w, 3] uint8 images."""
        logits = (pixels(images) - self.mean) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, weights=self.weights, bias=self.bias, mean=self.mean,
                 train_accuracy=json.dumps(self.train_accuracy))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> OwnerAttacker:
        with np.load(path) as data:
            return cls(data["weights"], data["bias"], data["mean"],
                       json.loads(str(data["train_accuracy"])))


def train_attacker(spec: AttackerSpec) -> OwnerAttacker:
    samples = list(iter_samples(spec.seed, spec.identities, spec.per_identity, spec.image_size,
                                first_identity=ATTACKER_FIRST_IDENTITY))
    x = pixels(np.stack([np.asarray(s.image) for s in samples]))
    y = np.array([[s.attributes[a] for a in ATTRIBUTES] for s in samples], dtype=np.float32)
    mean = x.mean(axis=0)
    torch.manual_seed(spec.seed)
    xt, yt = torch.from_numpy(x - mean), torch.from_numpy(y)
    linear = torch.nn.Linear(xt.shape[1], len(ATTRIBUTES))
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=spec.weight_decay)
    for _ in range(spec.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(xt), yt)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = ((linear(xt) > 0).float() == yt).float().mean(dim=0)
    return OwnerAttacker(linear.weight.detach().numpy().T.copy(), linear.bias.detach().numpy().copy(),
                         mean, {a: round(float(v), 4) for a, v in zip(ATTRIBUTES, accuracy)})


def cached_attacker(spec: AttackerSpec, cache_dir: Path) -> OwnerAttacker:
    """The attacker of `spec`, trained once and then loaded from `cache_dir`."""
    path = cache_dir / f"owner-attacker-{spec.key()}.npz"
    if path.exists():
        return OwnerAttacker.load(path)
    attacker = train_attacker(spec)
    attacker.save(path)
    return attacker
