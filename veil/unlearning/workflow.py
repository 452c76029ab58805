"""Train, unlearn and evaluate registered models: what the CLI and the unlearner service call.

Every function reads its inputs from the registry's object store, verifies them, and writes at
most one new version, last, through ModelRegistry.save: a function that raises (bad input, a
diverging solve, a store failure) leaves the registry as it was, except `unlearn` under a
verification policy that refuses the update: it keeps the version, unpublished ("unverified"), so
what was measured can be inspected, and then raises FailedPrecondition with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from veil.errors import FailedPrecondition, InvalidArgument, quoted
from veil.store import ObjectStore
from veil.unlearning.classifier import ClassifierSpec, build_classifier, images_to_tensor
from veil.unlearning.dataset import label_tensor, load_manifest, read_images
from veil.unlearning.evaluation import EvaluationData, evaluate
from veil.unlearning.manifest import Manifest, ManifestEntry, ReplacementPair
from veil.unlearning.methods import PairTensors, update_model
from veil.unlearning.registry import PUBLISHED, UNVERIFIED, PublishedModelCard, ModelRegistry
from veil.unlearning.training import ProgressFn, Stopwatch, fit, initialise
from veil.unlearning.params import TrainConfig, UnlearnParams
from veil.unlearning.verification import (CanaryCheck, Verification, VerificationPolicy,
                                          canary_check, verify_update)

# The library's default measures and records but publishes every update; the unlearner service
# enforces (VEIL_UNLEARNER_VERIFY_POLICY).
RECORD_ONLY = VerificationPolicy(mode="record")


@dataclass(frozen=True)
class StoreTrainingSet:
    """Training entries of a manifest, read from the store on demand (a methods.TrainingSet)."""

    store: ObjectStore
    entries: tuple[ManifestEntry, ...]
    columns: tuple[int, ...]
    image_size: int

    @property
    def size(self) -> int:
        return len(self.entries)

    def load(self, positions: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.entries if positions is None else [self.entries[i] for i in positions]
        images = read_images(self.store, [e.object for e in chosen], self.image_size)
        return images_to_tensor(images), label_tensor(chosen, self.columns)


def read_manifest(store: ObjectStore, key: str, sha256: str | None = None) -> Manifest:
    return Manifest.from_bytes(store.get(key, expected_sha256=sha256), f"manifest {key!r}")


def evaluation_data(store: ObjectStore, base: Manifest, revised: Manifest, image_size: int,
                    protected: str | None = None) -> EvaluationData | None:
    """Test split and the originals `revised` replaced in `base`; None when nothing was replaced
    or no attribute is protected."""
    positions = base.revised_positions(revised)
    names = base.protected_attributes
    if not positions or not names:
        return None
    protected = protected or names[0]
    if protected not in names:
        raise InvalidArgument(f"{quoted(protected)} is not a protected attribute of the manifest "
                              f"({', '.join(names)})")
    tasks = base.columns(base.task_attributes)
    (protected_column,) = base.columns([protected])
    originals = [base.train[i] for i in positions]
    test = read_images(store, [e.object for e in base.test], image_size)
    original_images = read_images(store, [e.object for e in originals], image_size)
    return EvaluationData(
        test_images=images_to_tensor(test), test_targets=label_tensor(base.test, tasks),
        test_protected=label_tensor(base.test, [protected_column]).reshape(-1),
        original_images=images_to_tensor(original_images),
        original_targets=label_tensor(originals, tasks),
        original_protected=label_tensor(originals, [protected_column]).reshape(-1))


def _classifier_spec(manifest: Manifest, image_size: int, channels: tuple[int, ...],
                     embedding_dim: int) -> ClassifierSpec:
    return ClassifierSpec(image_size=image_size, num_outputs=len(manifest.task_attributes),
                          channels=tuple(channels), embedding_dim=embedding_dim)


def check_train(store: ObjectStore, *, manifest_key: str, manifest_sha256: str | None = None,
                channels: tuple[int, ...] = (16, 32, 64), embedding_dim: int = 64) -> Manifest:
    """Check a training request without running it: the manifest is there (NotFound), intact
    (DataLoss) and well formed, and its first image fits the architecture (InvalidArgument).
    Images beyond the first are read only by `train`."""
    manifest = read_manifest(store, manifest_key, manifest_sha256)
    first = read_images(store, [manifest.train[0].object])
    _classifier_spec(manifest, int(first.shape[1]), channels, embedding_dim)
    return manifest


def train(registry: ModelRegistry, *, model: str, manifest_key: str, manifest_sha256: str | None = None,
          config: TrainConfig = TrainConfig(), channels: tuple[int, ...] = (16, 32, 64),
          embedding_dim: int = 64, progress: ProgressFn | None = None, job_id: str = "") -> PublishedModelCard:
    """Train a root version of `model` on the manifest stored at `manifest_key` (`job_id`: the
    unlearner job doing it, recorded in the card)."""
    store = registry.store
    manifest = read_manifest(store, manifest_key, manifest_sha256)
    data = load_manifest(store, manifest)
    spec = _classifier_spec(manifest, int(data.train_images.shape[-1]), channels, embedding_dim)
    stopwatch = Stopwatch()
    network = initialise(lambda: build_classifier(spec), config.seed)
    loss = fit(network, data.train_images, data.train_targets, config, progress)
    wall, cpu = stopwatch.wall_seconds, stopwatch.cpu_seconds
    metrics = evaluate(network, EvaluationData.test_only(data.test_images, data.test_targets))
    return registry.save_version(model=model, parent=None, state_dict=network.state_dict(),
                         manifest=manifest, spec=spec, training=config, method="train",
                         wall_time_seconds=wall, cpu_time_seconds=cpu, metrics=metrics,
                         stats={"final_train_loss": loss, "train_images": len(manifest.train),
                                "test_images": len(manifest.test),
                                "task_attributes": list(manifest.task_attributes)},
                         job_id=job_id)


def _pair_tensors(store: ObjectStore, base: Manifest, pairs: Sequence[ReplacementPair],
                  image_size: int) -> PairTensors:
    """The pairs' images (verified, `image_size` square) and their originals' task labels, in
    manifest order; `pairs` must already be checked against `base` (Manifest.revise)."""
    columns = base.columns(base.task_attributes)
    position = {entry.object.key: i for i, entry in enumerate(base.train)}
    ordered = sorted(pairs, key=lambda p: position[p.original.key])
    return PairTensors(
        originals=images_to_tensor(read_images(store, [p.original for p in ordered], image_size)),
        replacements=images_to_tensor(read_images(store, [p.replacement for p in ordered], image_size)),
        targets=label_tensor([base.train[position[p.original.key]] for p in ordered], columns))


def check_unlearn(registry: ModelRegistry, *, model: str, version: str | None,
                  pairs: Sequence[ReplacementPair]) -> PublishedModelCard:
    """Check an unlearning request without running it, as `unlearn` would: the version exists
    (NotFound), every pair's original is in its training split (InvalidArgument), and every image
    of the pairs is there (NotFound), intact (DataLoss) and of the model's shape
    (InvalidArgument). Returns the version's card."""
    card = registry.card(model, version)
    base = registry.manifest(card)
    base.revise(pairs)
    _pair_tensors(registry.store, base, pairs, card.spec.image_size)
    return card


def _canary_check(base: Manifest, replaced: Sequence[int], test_images: torch.Tensor,
                  test_targets: torch.Tensor) -> CanaryCheck | None:
    """The canary measurement, when the manifest describes a canary and marks a replaced original."""
    if base.canary is None or not any(base.train[i].canary for i in replaced):
        return None
    return canary_check(base.canary, base.task_attributes, test_images, test_targets)


def verify(store: ObjectStore, base: Manifest, revised: Manifest, parent: torch.nn.Module,
           child: torch.nn.Module, pairs: PairTensors, image_size: int,
           policy: VerificationPolicy, stats: dict) -> Verification:
    """Measure the update on its replaced originals against the held-out split (verification);
    `stats`: the update's, whose gradient norms (first and second order) explain a failure."""
    test = load_test_split(store, base, image_size)
    check = _canary_check(base, base.revised_positions(revised), *test)
    share = None
    if stats.get("replacement_gradient_norm", 0.0) > 0.0:
        share = stats["original_gradient_norm"] / stats["replacement_gradient_norm"]
    return verify_update(parent, child, pairs.originals, pairs.targets, *test,
                         min_progress=policy.min_progress, canary=check, original_gradient_share=share)


def load_test_split(store: ObjectStore, manifest: Manifest, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_images(store, [e.object for e in manifest.test], image_size)
    return images_to_tensor(images), label_tensor(manifest.test, manifest.columns(manifest.task_attributes))


def unlearn(registry: ModelRegistry, *, model: str, version: str | None, pairs: Sequence[ReplacementPair],
            method: str, params: UnlearnParams = UnlearnParams(),
            progress: ProgressFn | None = None, job_id: str = "",
            verification: VerificationPolicy = RECORD_ONLY) -> PublishedModelCard:
    """Replace the pairs' originals by their replacements in `model` (version default: newest
    published) with `method`; verifies the update and writes the child version, published when
    `verification` allows its verdict, else kept unverified and FailedPrecondition raised with
    the reason. `job_id`: the unlearner job doing it, recorded in the card."""
    store = registry.store
    parent = registry.load_version(model, version)
    spec, config = parent.card.spec, parent.card.train_config
    base = registry.manifest(parent.card)
    revised = base.revise(pairs)
    pair_tensors = _pair_tensors(store, base, pairs, spec.image_size)
    columns = tuple(base.columns(base.task_attributes))
    training = StoreTrainingSet(store, revised.train, columns, spec.image_size)
    result = update_model(method, parent.model, spec, config, pair_tensors, training, params, progress)
    child = build_classifier(spec)
    child.load_state_dict(result.state_dict)
    child.eval()
    data = evaluation_data(store, base, revised, spec.image_size)
    metrics = evaluate(child, data) if data is not None else {}
    checked = verify(store, base, revised, parent.model, child, pair_tensors, spec.image_size,
                     verification, result.stats)
    publish = verification.publishes(checked.verdict)
    session_ids = tuple(sorted({p.session_id for p in pairs if p.session_id}))
    card = registry.save_version(model=model, parent=parent.card.version, state_dict=result.state_dict,
                         manifest=revised, spec=spec, training=config, method=method,
                         hyperparameters=params.to_dict(), wall_time_seconds=result.wall_time_seconds,
                         cpu_time_seconds=result.cpu_time_seconds,
                         metrics=metrics, stats=result.stats, session_ids=session_ids,
                         pairs=len(pairs), job_id=job_id, status=PUBLISHED if publish else UNVERIFIED,
                         verification={**checked.to_dict(), "policy": verification.mode})
    if not publish:
        raise_unverified(card)
    return card


def raise_unverified(card: PublishedModelCard) -> None:
    """FailedPrecondition naming an unverified version and why its update was refused."""
    raise FailedPrecondition(
        f"{card.model} {card.version} kept unverified (not published): verification "
        f"{card.verification.get('verdict', '?')} under policy {card.verification.get('policy', '?')}: "
        f"{card.verification.get('reason', '')}")


def _revision(registry: ModelRegistry, card: PublishedModelCard) -> tuple[Manifest, Manifest] | None:
    if card.parent is None:
        return None
    return registry.manifest(registry.card(card.model, card.parent)), registry.manifest(card)


def compare(registry: ModelRegistry, *, model: str, version: str,
            reference: str | None = None, protected: str | None = None) -> dict[str, float]:
    """Metrics of `version`, against `reference` (e.g. a retrained sibling) when given.

    The originals whose leakage and membership are measured are those replaced by the reference's
    revision (or, without a reference, by the version's own): so the parent, the retrained model
    and every update of the same revision are measured on the same images.
    """
    candidate = registry.load_version(model, version)
    baseline = registry.load_version(model, reference) if reference else None
    revision = _revision(registry, baseline.card if baseline else candidate.card)
    if revision is None and baseline is not None:
        revision = _revision(registry, candidate.card)
    spec = candidate.card.spec
    if revision is not None:
        data = evaluation_data(registry.store, *revision, spec.image_size, protected)
    else:
        data = None
    if data is None:
        tensors = load_manifest(registry.store, registry.manifest(candidate.card), spec.image_size)
        data = EvaluationData.test_only(tensors.test_images, tensors.test_targets)
    metrics = evaluate(candidate.model, data, baseline.model if baseline else None)
    if baseline is not None and candidate.card.method != "train":
        # How many times faster than the reference the update was (wall clock and CPU).
        if candidate.card.wall_time_seconds > 0:
            metrics["time_ratio"] = baseline.card.wall_time_seconds / candidate.card.wall_time_seconds
        if candidate.card.cpu_time_seconds > 0:
            metrics["cpu_time_ratio"] = baseline.card.cpu_time_seconds / candidate.card.cpu_time_seconds
    return metrics
