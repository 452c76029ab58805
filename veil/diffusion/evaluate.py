"""`veil eval`: the measurements of DESIGN section 7 against the Diffusion-DP issue's bars.

Evaluators are trained here on CLEAN training images, never on the model's outputs:

* an attribute classifier (the attacker for protected attributes; the utility classifier for the
  others),
* an identity embedding (a classifier over the training identities; its normalised embedding
  layer is compared against a gallery holding each probed identity's mean training embedding).

Probes are held-out test images, one per identity. Each configuration is released from the same
inversion (prepared once), so the rows differ only by the mechanism. The protected attribute's
leakage is measured apart, on identities no model saw (veil.diffusion.audit). Identity and
utility are also swept over every privacy level with the key attribute protected
(veil.diffusion.sweep), into `details["levels"]`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn
from torch.nn import functional as F

from veil.data import CelebA
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.sweep import Release, release_measures, sweep_levels
from veil.files import write_bytes_atomically
from veil.privacy import DEFAULT_LEVEL, LEVELS, PrivacySettings, privacy_level

LEVEL0_ATTRIBUTE_TOLERANCE = 0.03
LEVEL0_REID_RATIO = 0.90
UTILITY_DROP = 0.05
IDENTITY_REID_MAX = 0.20


@dataclass
class EvalConfig:
    probes: int = 200
    gallery: int = 400  # identities in the re-ID gallery: the probes' own plus others (>= probes)
    small_gallery: int = 100  # also reported: the minimum gallery
    key_attribute: str = "Male"
    identity_level: int = DEFAULT_LEVEL
    seed: int = 0  # the evaluators' training and the gallery's extra identities
    # The probes drawn from the held-out split and the mechanisms' randomness: another value
    # re-measures the same model and evaluators on other probes.
    probe_seed: int = 0
    # Levels swept with the key attribute protected (identity and utility per level); () for none.
    sweep_levels: tuple[int, ...] = tuple(p.level for p in LEVELS)
    evaluator_epochs: int = 4
    identity_epochs: int = 8
    batch_size: int = 128


class EvalNet(nn.Module):
    """A small CNN with an embedding layer, used for both evaluators."""

    def __init__(self, outputs: int, embed_dim: int = 128, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = 3, image_size
        for cout in (32, 64, 128):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
            cin, size = cout, size // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.embed = nn.Linear(cin * size * size, embed_dim)
        self.head = nn.Linear(embed_dim, outputs)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.embedding(x)))


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_network(net: EvalNet, images: np.ndarray, targets: torch.Tensor, loss_fn: Any, epochs: int, batch: int,
           seed: int) -> EvalNet:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_all = _as_tensor(images)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = epochs * math.ceil(len(x_all) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            # A +-2 pixel shift: the evaluators must not key on exact pixel positions.
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x = torch.roll(x_all[idx], shifts=(dy, dx), dims=(2, 3))
            loss = loss_fn(net(x), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def train_attribute_classifier(data: CelebA, epochs: int, batch: int, seed: int) -> EvalNet:
    net = EvalNet(len(data.attribute_names), image_size=data.images.shape[1])
    targets = torch.from_numpy((data.attributes > 0).astype(np.float32))
    return train_network(net, data.images, targets, F.binary_cross_entropy_with_logits, epochs, batch, seed)


def train_identity_embedder(data: CelebA, epochs: int, batch: int, seed: int) -> tuple[EvalNet, np.ndarray]:
    classes, labels = np.unique(data.identities, return_inverse=True)
    net = EvalNet(len(classes), image_size=data.images.shape[1])
    return train_network(net, data.images, torch.from_numpy(labels), F.cross_entropy, epochs, batch, seed), classes


@torch.no_grad()
def predict(net: EvalNet, images: np.ndarray, fn: str, batch: int = 256) -> torch.Tensor:
    x = _as_tensor(images)
    call = net.embedding if fn == "embedding" else net
    return torch.cat([call(x[s:s + batch]) for s in range(0, len(x), batch)])


def attribute_correct(net: EvalNet, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, A): whether the net reads each attribute of each image as its label."""
    return (predict(net, images, "logits") > 0).numpy() == (labels > 0)


def attribute_accuracy(net: EvalNet, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return attribute_correct(net, images, labels).mean(axis=0)


class Gallery:
    """Each identity's mean normalised training embedding; top-1 re-identification of probes."""

    def __init__(self, embedder: EvalNet, data: CelebA, identities: np.ndarray) -> None:
        self.embedder = embedder
        self.identities = identities
        keep = np.isin(data.identities, identities)
        emb = F.normalize(predict(embedder, data.images[keep], "embedding"), dim=1)
        ids = data.identities[keep]
        self.centroids = F.normalize(torch.stack([emb[torch.from_numpy(ids == i)].mean(0) for i in identities]), dim=1)

    def reid_hits(self, images: np.ndarray, true_ids: np.ndarray) -> np.ndarray:
        """Per image, whether the gallery's nearest identity is its own."""
        emb = F.normalize(predict(self.embedder, images, "embedding"), dim=1)
        best = (emb @ self.centroids.T).argmax(dim=1).numpy()
        return self.identities[best] == true_ids

    def reid_rate(self, images: np.ndarray, true_ids: np.ndarray) -> float:
        return float(self.reid_hits(images, true_ids).mean())


def kernel_inception_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 20, size: int = 100,
                              seed: int = 0) -> float:
    """KID (unbiased MMD^2, cubic polynomial kernel) between two feature sets."""
    gen = torch.Generator().manual_seed(seed)
    size = min(size, len(a), len(b))
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=gen)[:size]]
        y = b[torch.randperm(len(b), generator=gen)[:size]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        m = size
        mmd = ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
               - 2 * kxy.mean())
        values.append(float(mmd))
    return float(np.mean(values))


@dataclass
class Row:
    name: str
    measured: float
    bar: str  # e.g. "<= 0.781"; empty for an information row
    passed: bool | None
    note: str = ""


@dataclass
class EvalReport:
    model_version: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # The level sweep's example grid (uint8 RGB), written by `veil eval --examples`; not in the JSON.
    examples: np.ndarray | None = None

    def add(self, name: str, measured: float, op: str = "", threshold: float | None = None, note: str = "") -> None:
        measured, passed, bar = float(measured), None, ""
        if threshold is not None:
            passed = measured <= threshold + 1e-12 if op == "<=" else measured >= threshold - 1e-12
            bar = f"{op} {threshold:.3f}"
        self.rows.append(Row(name, measured, bar, passed, note))

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    def table(self) -> str:
        lines = [f"{'measurement':<46} {'value':>8}  {'bar':<10} {'result':<6} note", "-" * 96]
        for r in self.rows:
            verdict = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
            lines.append(f"{r.name:<46} {r.measured:>8.3f}  {r.bar:<10} {verdict:<6} {r.note}")
        failed = sum(r.passed is False for r in self.rows)
        lines.append("-" * 96)
        lines.append(f"{sum(r.passed is True for r in self.rows)} passed, {failed} failed "
                     f"({self.details.get('seconds', 0):.0f} s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "passed": self.passed,
                "rows": [asdict(r) for r in self.rows], "details": self.details}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _probe_split(data: CelebA, count: int, seed: int) -> CelebA:
    test = data.split("test")
    rng = np.random.default_rng(seed)
    ids = np.unique(test.identities)
    chosen = rng.choice(ids, size=min(count, len(ids)), replace=False)
    first = [int(np.flatnonzero(test.identities == i)[0]) for i in np.sort(chosen)]
    return test.subset(np.array(first))


def _released(anonymizer: Anonymizer, prepared: Any, settings: PrivacySettings, seed: int) -> np.ndarray:
    return np.stack([row[0].image for row in anonymizer.release(prepared, settings, 1, seed)])


EVALUATOR_VERSION = "evalnet-1"


def evaluators(train: CelebA, cfg: EvalConfig, fingerprint: str, cache_dir: Path | None,
                log: Any) -> tuple[EvalNet, EvalNet]:
    """The two evaluators, trained on the clean training split, or read back from `cache_dir`.

    They depend only on the data and the evaluator settings, never on the model under test, so
    evaluating several models (or sampling settings) on one data set trains them once.
    """
    key = hashlib.sha256(json.dumps([EVALUATOR_VERSION, fingerprint, cfg.seed, cfg.evaluator_epochs,
                                     cfg.identity_epochs, cfg.batch_size]).encode()).hexdigest()[:16]
    path = None if cache_dir is None else Path(cache_dir) / f"evaluators-{key}.safetensors"
    classes = len(np.unique(train.identities))
    attacker = EvalNet(len(train.attribute_names), image_size=train.images.shape[1])
    embedder = EvalNet(classes, image_size=train.images.shape[1])
    if path is not None and path.is_file():
        tensors = load_file(str(path))
        attacker.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("attacker.")})
        embedder.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("embedder.")})
        log(f"evaluators read from {path}")
        return attacker.eval(), embedder.eval()
    log(f"training evaluators on {len(train)} clean images")
    attacker = train_attribute_classifier(train, cfg.evaluator_epochs, cfg.batch_size, cfg.seed)
    embedder, _ = train_identity_embedder(train, cfg.identity_epochs, cfg.batch_size, cfg.seed)
    if path is not None:
        tensors = {f"attacker.{k}": v for k, v in attacker.state_dict().items()}
        tensors.update({f"embedder.{k}": v for k, v in embedder.state_dict().items()})
        write_bytes_atomically(path, save({k: v.contiguous() for k, v in tensors.items()}))
    return attacker, embedder


def evaluate(anonymizer: Anonymizer, data: CelebA, cfg: EvalConfig, log: Any = print,
             cache_dir: Path | None = None) -> EvalReport:
    """Run every measurement on `data` (a CelebA-format set with train and test splits)."""
    started = time.monotonic()
    model = anonymizer.model
    names = list(data.attribute_names)
    if names != model.attribute_names:
        raise ValueError(f"data attributes {names} differ from the model's {model.attribute_names}")
    train = data.split("train")
    probes = _probe_split(data, cfg.probes, cfg.probe_seed)
    report = EvalReport(model.card.model_version)
    others = np.setdiff1d(np.unique(train.identities), probes.identities)
    extra = np.random.default_rng(cfg.seed).choice(others, max(0, min(cfg.gallery - len(probes), len(others))),
                                                   replace=False)
    gallery_ids = np.sort(np.concatenate([np.unique(probes.identities), extra]))
    small = np.arange(min(cfg.small_gallery, len(probes)))
    report.details.update(probes=len(probes), gallery_identities=len(gallery_ids), sampling=asdict(anonymizer.sampling),
                          eval_config=asdict(cfg), data_fingerprint=data.fingerprint())

    attacker, embedder = evaluators(train, cfg, data.fingerprint(), cache_dir, log)
    gallery = Gallery(embedder, train, gallery_ids)
    small_gallery = Gallery(embedder, train, probes.identities[small])
    orig_acc = attribute_accuracy(attacker, probes.images, probes.attributes)
    orig_reid = gallery.reid_rate(probes.images, probes.identities)
    orig_small = small_gallery.reid_rate(probes.images[small], probes.identities[small])
    report.details["original_accuracy"] = dict(zip(names, orig_acc.round(4).tolist()))

    log(f"inverting {len(probes)} probes")
    prepared = anonymizer.prepare(list(probes.images))

    log("level 0")
    reconstruction = PrivacySettings.from_level(0, [], names)
    recon = _released(anonymizer, prepared, reconstruction, cfg.probe_seed)
    mse = np.mean((recon.astype(np.float64) - probes.images.astype(np.float64)) ** 2)
    report.add("level0 reconstruction PSNR (dB)", 10 * math.log10(255**2 / max(mse, 1e-12)))
    recon_acc = attribute_accuracy(attacker, recon, probes.attributes)
    for j, attr in enumerate(names):
        report.add(f"level0 |acc change| {attr}", abs(orig_acc[j] - recon_acc[j]), "<=", LEVEL0_ATTRIBUTE_TOLERANCE,
                   f"orig {orig_acc[j]:.3f} -> {recon_acc[j]:.3f}")
    recon_reid = gallery.reid_rate(recon, probes.identities)
    report.add("level0 re-ID / originals' re-ID", recon_reid / max(orig_reid, 1e-12), ">=", LEVEL0_REID_RATIO,
               f"{recon_reid:.3f} vs originals {orig_reid:.3f}")

    # The protected attribute's leakage (randomized response, every level) is measured by the
    # audit (veil.diffusion.audit), expected over the mechanism rather than from one coin draw.
    report.details["protected_group"] = [cfg.key_attribute, *model.card.implied.get(cfg.key_attribute, [])]
    row = privacy_level(cfg.identity_level)
    log(f"identity mechanism at level {cfg.identity_level} (eps_id={row.identity_epsilon}, rho={row.rho})")
    out = _released(anonymizer, prepared, PrivacySettings.from_level(cfg.identity_level, [], names), cfg.probe_seed + 2)
    reid = gallery.reid_rate(out, probes.identities)
    report.add(f"identity level {cfg.identity_level} re-ID (gallery {len(gallery_ids)})", reid, "<=", IDENTITY_REID_MAX,
               f"originals {orig_reid:.3f}; chance {1 / len(gallery_ids):.3f}")
    report.add(f"identity level {cfg.identity_level} re-ID (gallery {len(small)})",
               small_gallery.reid_rate(out[small], probes.identities[small]),
               note=f"originals {orig_small:.3f}; chance {1 / len(small):.3f}")
    acc = attribute_accuracy(attacker, out, probes.attributes)
    for j, attr in enumerate(names):
        report.add(f"identity level {cfg.identity_level} utility drop {attr}", orig_acc[j] - acc[j], "<=", UTILITY_DROP,
                   f"orig {orig_acc[j]:.3f} -> {acc[j]:.3f}")
    real = predict(attacker, probes.images, "embedding")
    report.add("KID level 0 vs real (attacker features)", kernel_inception_distance(predict(attacker, recon, "embedding"), real))
    report.add(f"KID identity level {cfg.identity_level} vs real", kernel_inception_distance(predict(attacker, out, "embedding"), real))

    group = report.details["protected_group"]
    utility = [j for j, attr in enumerate(names) if attr not in group]

    def measure(images: np.ndarray) -> dict[str, Any]:
        return release_measures(gallery.reid_hits(images, probes.identities),
                                small_gallery.reid_hits(images[small], probes.identities[small]),
                                attribute_correct(attacker, images, probes.attributes), utility, names, cfg.seed)

    def release(settings: PrivacySettings, seed: int) -> np.ndarray:
        return _released(anonymizer, prepared, settings, seed)

    # Level 0 protects nothing whatever is asked, so its sweep entry is the reconstruction above. The
    # identity level's release above protects no attribute (its bar holds with attributes kept), so
    # the sweep's, with the key attribute protected, is another release.
    done = [Release(reconstruction, cfg.probe_seed, recon)]
    entries, report.examples = sweep_levels(cfg.sweep_levels, cfg.key_attribute, names, cfg.probe_seed, release,
                                            measure, probes.images, done, log)
    report.details["levels"] = {
        "attribute": cfg.key_attribute, "protected_group": group, "utility_attributes": [names[j] for j in utility],
        "gallery": len(gallery_ids), "small_gallery": len(small), "originals": measure(probes.images),
        "levels": entries}
    report.details["seconds"] = time.monotonic() - started
    return report

