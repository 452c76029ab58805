"""How good an update is, measured against the model retrained without the originals.

Metrics (all on tensors; the registry layer resolves versions and data):
- test_accuracy: label-wise accuracy on the test split (mean over images and task attributes);
- agreement: fraction of test (image, attribute) predictions equal to the reference model's;
- l2_distance: |theta - theta_reference| over every parameter;
- probe_leakage: an attacker fits a logistic-regression probe for the protected attribute on the
  model's embeddings of labelled public images (the test split) and applies it to the embeddings of
  the revised subjects' ORIGINAL images; its accuracy on their original attribute values;
- mia_auc: loss-based membership inference: the AUC of -loss separating the originals (members of
  the parent's training set) from the test split (never trained on); 0.5 means indistinguishable;
- lira_auc: the offline likelihood-ratio attack (Carlini et al., "Membership Inference Attacks From
  First Principles", S&P 2022) with shadow models trained without any of the scored images: each
  image's confidence (log-odds of its true labels) is standardised by the shadows' confidence on
  that image (per-image mean, one pooled deviation, as the paper advises for few shadows), which
  removes how easy the image is; the AUC of that score, originals vs test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from veil.errors import InvalidArgument
from veil.unlearning.classifier import embed
from veil.unlearning.training import batched, per_sample_loss

PROBE_L2 = 1e-2


@dataclass(frozen=True)
class EvaluationData:
    """Test split and the revised subjects' originals, with task and protected labels (0/1).
    Without originals (a model nothing was unlearned from) only the test metrics apply."""

    test_images: torch.Tensor
    test_targets: torch.Tensor
    test_protected: torch.Tensor | None = None
    original_images: torch.Tensor | None = None
    original_targets: torch.Tensor | None = None
    original_protected: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.test_images.shape[0] != self.test_targets.shape[0] or self.test_images.shape[0] == 0:
            raise InvalidArgument("evaluation needs test images, one label row each")
        originals = (self.test_protected, self.original_images, self.original_targets,
                     self.original_protected)
        if any(t is None for t in originals) != all(t is None for t in originals):
            raise InvalidArgument("give all of the originals' images and labels and the test split's "
                                  "protected labels, or none")
        if self.has_originals and not (
                self.test_protected.shape[0] == self.test_images.shape[0]
                and self.original_images.shape[0] == self.original_targets.shape[0]
                == self.original_protected.shape[0] > 0):
            raise InvalidArgument("originals' images and labels differ in length, or are empty")

    @property
    def has_originals(self) -> bool:
        return self.original_images is not None

    @classmethod
    def test_only(cls, images: torch.Tensor, targets: torch.Tensor) -> EvaluationData:
        return cls(images, targets)


def predictions(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return batched(model, images) > 0


def test_accuracy(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> float:
    return float((predictions(model, images) == (targets > 0.5)).float().mean())


def agreement(model: nn.Module, reference: nn.Module, images: torch.Tensor) -> float:
    return float((predictions(model, images) == predictions(reference, images)).float().mean())


def parameter_distance(model: nn.Module, reference: nn.Module) -> float:
    ours, theirs = model.state_dict(), reference.state_dict()
    if ours.keys() != theirs.keys() or any(ours[k].shape != theirs[k].shape for k in ours):
        raise InvalidArgument("the models have different architectures")
    return float(torch.sqrt(sum(((ours[k].double() - theirs[k].double()) ** 2).sum() for k in ours)))


def fit_probe(features: torch.Tensor, labels: torch.Tensor) -> nn.Linear:
    """L2-regularised logistic regression (L-BFGS, float64) on standardised features."""
    x = features.double()
    y = labels.double().reshape(-1, 1)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    probe = nn.Linear(x.shape[1], 1).double()
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(probe(x), y)
        loss = loss + PROBE_L2 / 2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    # Fold the standardisation into the probe so it applies to raw features.
    with torch.no_grad():
        probe.bias -= (probe.weight * (mean / std)).sum()
        probe.weight /= std
    return probe


def probe_leakage(model: nn.Sequential, data: EvaluationData) -> float:
    train_features = batched(lambda x: embed(model, x), data.test_images)
    probe = fit_probe(train_features, data.test_protected)
    features = batched(lambda x: embed(model, x), data.original_images).double()
    with torch.no_grad():
        guesses = probe(features).reshape(-1) > 0
    return float((guesses == (data.original_protected > 0.5)).float().mean())


def auc(members: np.ndarray, others: np.ndarray) -> float:
    """Probability that a member's score exceeds a non-member's (ties count half)."""
    ranks = rankdata(np.concatenate([members, others]))
    m, n = len(members), len(others)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def membership_scores(model: nn.Module, data: EvaluationData) -> tuple[np.ndarray, np.ndarray]:
    """The loss attack's score (-loss) of each original and of each test image."""
    def scores(images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        return (-per_sample_loss(batched(model, images), targets)).numpy()

    return (scores(data.original_images, data.original_targets),
            scores(data.test_images, data.test_targets))


def membership_auc(model: nn.Module, data: EvaluationData) -> float:
    return auc(*membership_scores(model, data))


def confidence(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per image, the log-odds the model gives its true labels, summed over the attributes."""
    logits = batched(model, images)
    return (logits * (2 * targets - 1)).sum(dim=1).double().numpy()


def lira_auc(model: nn.Module, shadows: Sequence[nn.Module], data: EvaluationData) -> float:
    """Offline LiRA (module docstring); `shadows` were trained on none of the scored images."""
    if len(shadows) < 2:
        raise InvalidArgument("the likelihood-ratio attack needs at least two shadow models")
    images = torch.cat([data.original_images, data.test_images])
    targets = torch.cat([data.original_targets, data.test_targets])
    out = np.stack([confidence(shadow, images, targets) for shadow in shadows])
    mean = out.mean(axis=0)
    deviation = max(float((out - mean).std(ddof=1)), 1e-6)
    score = (confidence(model, images, targets) - mean) / deviation
    m = data.original_images.shape[0]
    return auc(score[:m], score[m:])


def evaluate(model: nn.Sequential, data: EvaluationData, reference: nn.Sequential | None = None,
             shadows: Sequence[nn.Module] = ()) -> dict[str, float]:
    """Every metric of the module docstring; the comparisons only when a reference is given, the
    likelihood-ratio attack only with shadow models."""
    metrics = {"test_accuracy": test_accuracy(model, data.test_images, data.test_targets)}
    if data.has_originals:
        metrics["probe_leakage"] = probe_leakage(model, data)
        metrics["mia_auc"] = membership_auc(model, data)
        if shadows:
            metrics["lira_auc"] = lira_auc(model, shadows, data)
    if reference is not None:
        metrics["agreement"] = agreement(model, reference, data.test_images)
        metrics["l2_distance"] = parameter_distance(model, reference)
    return metrics
