"""The four ways to update a published model after originals are replaced, behind one function.

first / second: the FeatureUnlearner's first- and second-order updates of the parent;
finetune: the parent trained further on the revised training set for `params.epochs` epochs;
retrain: a model trained from scratch on the revised training set with the parent's training
configuration (same seed), the reference every other method is measured against.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from veil.errors import InvalidArgument
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.method_names import FIRST_ORDER, RETRAIN, SECOND_ORDER, check_method
from veil.unlearning.training import ProgressFn, Stopwatch, fit, initialise
from veil.unlearning.params import TrainConfig, UnlearnParams
from veil.unlearning.unlearner import FeatureUnlearner, UpdateResult


class TrainingSet(Protocol):
    """The revised training set, loaded only as far as a method needs it."""

    @property
    def size(self) -> int: ...

    def load(self, positions: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets) at `positions` (default: all), in that order."""


@dataclass(frozen=True)
class InMemoryTrainingSet:
    images: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    def load(self, positions: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None:
            return self.images, self.targets
        index = torch.as_tensor(list(positions), dtype=torch.long)
        return self.images[index], self.targets[index]


@dataclass(frozen=True)
class PairTensors:
    """Originals, their replacements and their labels (a replacement keeps its original's)."""

    originals: torch.Tensor
    replacements: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.originals.shape != self.replacements.shape:
            raise InvalidArgument(
                f"originals have shape {tuple(self.originals.shape)} but replacements have "
                f"{tuple(self.replacements.shape)}")
        if self.originals.shape[0] != self.targets.shape[0]:
            raise InvalidArgument(f"{self.originals.shape[0]} pairs but {self.targets.shape[0]} label rows")
        if self.originals.shape[0] == 0:
            raise InvalidArgument("no replacement pairs")


def hessian_positions(size: int, params: UnlearnParams) -> list[int]:
    """`params.hessian_samples` training positions, drawn without replacement with `params.seed`."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(params.seed))
    return sorted(order[:params.hessian_samples].tolist())


def update_model(method: str, parent: nn.Sequential, spec: ClassifierSpec, config: TrainConfig,
                 pairs: PairTensors, training: TrainingSet, params: UnlearnParams,
                 progress: ProgressFn | None = None) -> UpdateResult:
    """Apply `method` to `parent` (left unchanged); the result holds the new state dict.
    `training` is the revised training set (pairs' replacements in place of their originals)."""
    check_method(method)
    expected = (3, spec.image_size, spec.image_size)
    if tuple(pairs.originals.shape[1:]) != expected:
        raise InvalidArgument(f"pair images have shape {tuple(pairs.originals.shape[1:])}; the model "
                              f"takes {expected}")
    if method in (FIRST_ORDER, SECOND_ORDER):
        unlearner = FeatureUnlearner(parent, weight_decay=config.weight_decay,
                                     train_size=training.size, last_k_layers=params.last_k_layers)
        if method == FIRST_ORDER:
            return unlearner.first_order(pairs.originals, pairs.replacements, pairs.targets, params)
        sample_images, sample_targets = training.load(hessian_positions(training.size, params))
        return unlearner.second_order(pairs.originals, pairs.replacements, pairs.targets,
                                      sample_images, sample_targets, params, progress)
    images, targets = training.load()
    stopwatch = Stopwatch()
    if method == RETRAIN:
        model = initialise(lambda: build_classifier(spec), config.seed)
        loss = fit(model, images, targets, config, progress)
    else:
        model = copy.deepcopy(parent)
        tuning = dataclasses.replace(config, epochs=params.epochs, seed=params.seed)
        loss = fit(model, images, targets, tuning, progress)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return UpdateResult(state_dict=state, stats={"final_train_loss": loss}).timed(stopwatch)
