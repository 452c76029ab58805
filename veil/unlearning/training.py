"""Deterministic training of the attribute classifier (used for training, retraining and fine-tuning).

The objective is mean_i l(z_i) + weight_decay/2 * |theta|^2 with l the per-sample loss below; Adam's
coupled weight decay adds exactly that penalty's gradient, so the unlearner's Hessian
(mean Hessian of l + weight_decay * I) is the Hessian of the objective that was optimised.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from veil.errors import Aborted, InvalidArgument
from veil.unlearning.params import TrainConfig

# (stage, step, total_steps): called as long work advances, e.g. to update a job's progress.
ProgressFn = Callable[[str, int, int], None]


def per_sample_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over the attributes: one loss per sample, shape (N,)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)


# torch's global generator and its deterministic-algorithms switch belong to the process: seeded
# sections running in concurrent threads (the unlearner's job workers) would draw from each
# other's seeds and restore each other's state, so they run one at a time.
_GLOBAL_TORCH_STATE = threading.RLock()


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch's global generator and force deterministic kernels, restoring both afterwards.
    One thread at a time holds this section (see _GLOBAL_TORCH_STATE)."""
    with _GLOBAL_TORCH_STATE, torch.random.fork_rng(devices=[]):
        previous = torch.are_deterministic_algorithms_enabled()
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def fit(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, config: TrainConfig,
        progress: ProgressFn | None = None) -> float:
    """Train `model` in place with Adam and a cosine learning-rate decay to zero; returns the last
    epoch's mean loss. Decaying to zero makes the end point depend little on the last batches, so
    models trained on nearly the same data agree (what unlearning is compared against)."""
    if images.shape[0] != targets.shape[0]:
        raise InvalidArgument(f"{images.shape[0]} images but {targets.shape[0]} label rows")
    if images.shape[0] == 0:
        raise InvalidArgument("cannot train on an empty training set")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    shuffle = torch.Generator().manual_seed(config.seed)
    count = images.shape[0]
    steps_per_epoch = math.ceil(count / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    epoch_loss = math.nan
    with deterministic(config.seed):
        model.train()
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(count, generator=shuffle)
            total = 0.0
            for start in range(0, count, config.batch_size):
                batch = order[start:start + config.batch_size]
                loss = per_sample_loss(model(images[batch]), targets[batch]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * batch.numel()
            epoch_loss = total / count
            if not math.isfinite(epoch_loss):
                raise Aborted(f"training diverged: the loss of epoch {epoch} is {epoch_loss}")
            if progress is not None:
                progress("train", epoch, config.epochs)
        model.eval()
    return epoch_loss


def initialise(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model whose initial weights depend only on `seed`."""
    with deterministic(seed):
        return build()


class Stopwatch:
    """Wall-clock and CPU seconds since creation. CPU time (all threads of this process) is what
    side-by-side comparisons use on a shared machine, where wall time depends on the neighbours."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._wall

    @property
    def cpu_seconds(self) -> float:
        return time.process_time() - self._cpu


@torch.no_grad()
def batched(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
            batch_size: int = 256) -> torch.Tensor:
    """Apply `function` to `inputs` in batches without autograd and concatenate the outputs."""
    return torch.cat([function(inputs[i:i + batch_size]) for i in range(0, inputs.shape[0], batch_size)])
