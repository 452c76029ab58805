"""The four ways to update a published model after originals are replaced, behind one function.

first / second: the FeatureUnlearner's first- and second-order updates of the parent;
finetune: the parent trained further on the revised training set for `params.epochs` epochs;
retrain: a model trained from scratch on the revised training set with the parent's training
configuration (same seed), the reference every other method is measured against.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from veil.errors import InvalidArgument
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.training import ProgressFn, TrainConfig, fit, initialise
from veil.unlearning.unlearner import FeatureUnlearner, UnlearnParams, UpdateResult

METHODS = ("first", "second", "finetune", "retrain")


@dataclass(frozen=True)
class Revision:
    """A training set after replacing originals, and the replacement pairs themselves."""

    train_images: torch.Tensor
    train_targets: torch.Tensor
    original_images: torch.Tensor
    replacement_images: torch.Tensor
    # Labels of the pairs: a replacement keeps its original's labels.
    pair_targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.original_images.shape != self.replacement_images.shape:
            raise InvalidArgument(
                f"originals have shape {tuple(self.original_images.shape)} but replacements have "
                f"{tuple(self.replacement_images.shape)}")
        if self.original_images.shape[1:] != self.train_images.shape[1:]:
            raise InvalidArgument(
                f"pair images have shape {tuple(self.original_images.shape[1:])} but training "
                f"images have {tuple(self.train_images.shape[1:])}")
        if self.original_images.shape[0] == 0:
            raise InvalidArgument("no replacement pairs")


def hessian_sample(revision: Revision, params: UnlearnParams) -> tuple[torch.Tensor, torch.Tensor]:
    """`params.hessian_samples` training examples, drawn without replacement with `params.seed`."""
    count = revision.train_images.shape[0]
    order = torch.randperm(count, generator=torch.Generator().manual_seed(params.seed))
    chosen = order[:params.hessian_samples]
    return revision.train_images[chosen], revision.train_targets[chosen]


def update_model(method: str, parent: nn.Sequential, spec: ClassifierSpec, config: TrainConfig,
                 revision: Revision, params: UnlearnParams,
                 progress: ProgressFn | None = None) -> UpdateResult:
    """Apply `method` to `parent` (left unchanged); the result holds the new state dict."""
    if method not in METHODS:
        raise InvalidArgument(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method in ("first", "second"):
        unlearner = FeatureUnlearner(parent, weight_decay=config.weight_decay,
                                     train_size=revision.train_images.shape[0],
                                     last_k_layers=params.last_k_layers)
        if method == "first":
            return unlearner.first_order(revision.original_images, revision.replacement_images,
                                         revision.pair_targets, params)
        sample_images, sample_targets = hessian_sample(revision, params)
        return unlearner.second_order(revision.original_images, revision.replacement_images,
                                      revision.pair_targets, sample_images, sample_targets, params,
                                      progress)
    started = time.perf_counter()
    if method == "retrain":
        model = initialise(lambda: build_classifier(spec), config.seed)
        loss = fit(model, revision.train_images, revision.train_targets, config, progress)
    else:
        model = copy.deepcopy(parent)
        tuning = dataclasses.replace(config, epochs=params.epochs, seed=params.seed)
        loss = fit(model, revision.train_images, revision.train_targets, tuning, progress)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return UpdateResult(state_dict=state, stats={"final_train_loss": loss},
                        wall_time_seconds=time.perf_counter() - started)
