"""Versioned published models in the object store.

Layout under the store (a tenant's view of it, for tenant-scoped registries):

    models/<model>/<version>/model.safetensors   weights
    models/<model>/<version>/manifest.json       the data set it was trained on (or revised to)
    models/<model>/<version>/card.json           the model card, written LAST
    models/<model>/claims/<version>/<token>      who claimed a version number

A version whose update failed its verification (veil.unlearning.verification) is kept with status
"unverified": listed and loadable by name, but never "the newest version" that later updates,
dependents and default reads resolve to.

A version exists exactly when its card exists: the weights and manifest are written (atomically,
each) before the card, and readers ignore a version folder without one, so a failed save leaves
nothing visible. The card pins the other two objects by sha256, so a reader can never pair a card
with weights it does not describe.

Versions are v1, v2, ... per model. Two writers never get the same number: each writes a claim
object for the next free number and lists the claims for it; a writer owns the number only if its
claim is the only one listed, else it withdraws its claim and tries again after a random pause. Of
two writers the later lister always sees the other's claim unless it was withdrawn, so at most one
wins (given read-after-write listing, which the local directory and S3 provide).
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from veil.errors import Aborted, DataLoss, InvalidArgument, NotFound, quoted
from veil.store import ObjectStore
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.manifest import Manifest, PinnedObject
from veil.unlearning.params import TrainConfig

CARD_FORMAT = "veil.model-card/1"
ROOT = "models"
CARD, WEIGHTS, MANIFEST = "card.json", "model.safetensors", "manifest.json"
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_VERSION = re.compile(r"v([1-9][0-9]{0,8})")
PUBLISHED, UNVERIFIED = "published", "unverified"
MAX_CLAIM_ATTEMPTS = 50


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise InvalidArgument(f"model name {quoted(name)} is invalid: use 1-63 lowercase letters, digits, "
                              "'_' or '-', starting with a letter or digit")
    return name


def _version_number(version: str) -> int:
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise InvalidArgument(f"version {quoted(version)} is invalid: versions are v1, v2, ...")
    return int(match.group(1))


@dataclass(frozen=True)
class PublishedModelCard:
    """What a version is and how it came to be (stored as card.json)."""

    model: str
    version: str
    parent: str | None
    created_at: str
    checkpoint: PinnedObject
    manifest: PinnedObject
    architecture: dict
    training: dict
    # "train" for a root version, else the update method (first, second, finetune, retrain).
    method: str
    hyperparameters: dict = field(default_factory=dict)
    wall_time_seconds: float = 0.0
    # CPU seconds of all this process's threads: comparable between runs on a busy machine.
    cpu_time_seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    # Solver or training diagnostics of the step that made this version.
    stats: dict = field(default_factory=dict)
    session_ids: tuple[str, ...] = ()
    pairs: int = 0
    # The unlearner job that wrote this version ("" when written otherwise, e.g. by the CLI): a
    # job resumed after a crash finds the version it already wrote instead of writing another.
    job_id: str = ""
    # PUBLISHED, or UNVERIFIED when the update failed its verification (kept for inspection).
    status: str = PUBLISHED
    # What the update's verification measured (verification.Verification.to_dict()).
    verification: dict = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.status == PUBLISHED

    @property
    def manifest_sha256(self) -> str:
        return self.manifest.sha256

    @property
    def spec(self) -> ClassifierSpec:
        return ClassifierSpec.from_dict(self.architecture)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.training)

    def to_json(self) -> str:
        document = asdict(self)
        document["format"] = CARD_FORMAT
        document["manifest_sha256"] = self.manifest_sha256
        document["session_ids"] = list(self.session_ids)
        return json.dumps(document, sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: bytes | str, where: str) -> PublishedModelCard:
        try:
            document = json.loads(text)
            if document.pop("format") != CARD_FORMAT:
                raise ValueError("unknown format")
            document.pop("manifest_sha256")
            document["checkpoint"] = PinnedObject(**document["checkpoint"])
            document["manifest"] = PinnedObject(**document["manifest"])
            document["session_ids"] = tuple(document["session_ids"])
            return cls(**document)
        except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
            raise DataLoss(f"{where} is not a valid model card: {exc}") from None


@dataclass(frozen=True)
class LoadedPublishedModel:
    card: PublishedModelCard
    model: nn.Sequential


class ModelRegistry:
    """Save, find and load model versions in an object store (see the module docstring)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @property
    def store(self) -> ObjectStore:
        return self._store

    def _key(self, model: str, version: str, name: str) -> str:
        return f"{ROOT}/{model}/{version}/{name}"

    def _ref(self, key: str, sha256: str) -> PinnedObject:
        return PinnedObject(self._store.bucket, key, sha256)

    # -- reading ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        names = {info.key.split("/")[1] for info in self._store.list(f"{ROOT}/")
                 if info.key.endswith(f"/{CARD}")}
        return sorted(names)

    def versions(self, model: str) -> list[str]:
        """Versions of `model` that exist (have a card), oldest first."""
        validate_model_name(model)
        found = []
        for info in self._store.list(f"{ROOT}/{model}/v"):
            parts = info.key.split("/")
            if len(parts) == 4 and parts[3] == CARD and _VERSION.fullmatch(parts[2]):
                found.append(parts[2])
        return sorted(found, key=_version_number)

    def card(self, model: str, version: str | None = None) -> PublishedModelCard:
        """The card of `version` (default: the newest published); NotFound names the versions
        that exist."""
        validate_model_name(model)
        if version is None:
            for candidate in reversed(self.versions(model)):
                card = self.card(model, candidate)
                if card.published:
                    return card
            raise NotFound(f"model {quoted(model)} has no versions" if not self.versions(model)
                           else f"model {quoted(model)} has no published versions")
        _version_number(version)
        key = self._key(model, version, CARD)
        try:
            data = self._store.get(key)
        except NotFound:
            known = ", ".join(self.versions(model)) or "none"
            raise NotFound(f"model {quoted(model)} has no version {quoted(version)} (versions: {known})") from None
        return PublishedModelCard.from_json(data, f"object {key!r}")

    def list(self, model: str | None = None) -> list[PublishedModelCard]:
        """Cards of every version (of one model, or of all), newest first."""
        names = [model] if model else self.models()
        cards = [self.card(name, version) for name in names for version in self.versions(name)]
        return sorted(cards, key=lambda c: (c.created_at, _version_number(c.version)), reverse=True)

    def lineage(self, model: str, version: str | None = None) -> list[str]:
        """Versions from the root to `version` (inclusive), oldest first."""
        card = self.card(model, version)
        chain = [card.version]
        while card.parent is not None:
            card = self.card(model, card.parent)
            chain.append(card.version)
        return chain[::-1]

    def manifest(self, card: PublishedModelCard) -> Manifest:
        data = self._store.get(card.manifest.key, expected_sha256=card.manifest.sha256)
        return Manifest.from_bytes(data, f"manifest of {card.model} {card.version}")

    def load_version(self, model: str, version: str | None = None) -> LoadedPublishedModel:
        card = self.card(model, version)
        data = self._store.get(card.checkpoint.key, expected_sha256=card.checkpoint.sha256)
        network = build_classifier(card.spec)
        try:
            network.load_state_dict(load_safetensors(data))
        except (RuntimeError, ValueError) as exc:
            raise DataLoss(f"weights of {model} {card.version} do not fit its card: {exc}") from None
        return LoadedPublishedModel(card, network.eval())

    def version_of_job(self, model: str, job_id: str) -> PublishedModelCard | None:
        """The version of `model` written by job `job_id`, if any."""
        if not job_id:
            raise InvalidArgument("a job id is needed to find the version it wrote")
        return next((c for c in self.list(model) if c.job_id == job_id), None)

    def dependents(self, sha256s: set[str]) -> list[PublishedModelCard]:
        """The newest version of each model whose training manifest holds any of `sha256s`."""
        out = []
        for name in self.models():
            card = self.card(name)
            if any(entry.object.sha256 in sha256s for entry in self.manifest(card).train):
                out.append(card)
        return out

    # -- writing ---------------------------------------------------------------------------------

    def _claim_version(self, model: str) -> str:
        for attempt in range(MAX_CLAIM_ATTEMPTS):
            used = [_version_number(part) for info in self._store.list(f"{ROOT}/{model}/")
                    for part in info.key.split("/")[2:4] if _VERSION.fullmatch(part)]
            version = f"v{max(used, default=0) + 1}"
            claim = f"{ROOT}/{model}/claims/{version}/{secrets.token_hex(8)}"
            self._store.put(claim, b"")
            if len(list(self._store.list(f"{ROOT}/{model}/claims/{version}/"))) == 1:
                return version
            # Contended: withdraw and retry after a random pause, so that contenders spread out.
            self._store.delete(claim)
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))
        raise Aborted(f"could not claim a version of {quoted(model)} after {MAX_CLAIM_ATTEMPTS} attempts: "
                      "too many concurrent writers; try again")

    def save_version(self, *, model: str, parent: str | None, state_dict: dict[str, torch.Tensor],
             manifest: Manifest, spec: ClassifierSpec, training: TrainConfig, method: str,
             hyperparameters: dict | None = None, wall_time_seconds: float = 0.0,
             cpu_time_seconds: float = 0.0,
             metrics: dict | None = None, stats: dict | None = None,
             session_ids: tuple[str, ...] = (), pairs: int = 0, job_id: str = "",
             status: str = PUBLISHED, verification: dict | None = None) -> PublishedModelCard:
        """Write a new version; returns its card. The version is visible only once complete."""
        validate_model_name(model)
        if status not in (PUBLISHED, UNVERIFIED):
            raise InvalidArgument(f"status must be {quoted(PUBLISHED)} or {quoted(UNVERIFIED)}, got {quoted(status)}")
        if parent is not None:
            self.card(model, parent)
        version = self._claim_version(model)
        weights = save_safetensors({k: v.detach().contiguous() for k, v in state_dict.items()})
        written: list[str] = []
        try:
            weights_info = self._store.put(self._key(model, version, WEIGHTS), weights)
            written.append(weights_info.key)
            manifest_info = self._store.put(self._key(model, version, MANIFEST), manifest.to_bytes(),
                                            content_type="application/json")
            written.append(manifest_info.key)
            card = PublishedModelCard(
                model=model, version=version, parent=parent,
                created_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                checkpoint=self._ref(weights_info.key, weights_info.sha256 or ""),
                manifest=self._ref(manifest_info.key, manifest_info.sha256 or ""),
                architecture=spec.to_dict(), training=training.to_dict(), method=method,
                hyperparameters=dict(hyperparameters or {}), wall_time_seconds=wall_time_seconds,
                cpu_time_seconds=cpu_time_seconds,
                metrics=dict(metrics or {}), stats=dict(stats or {}),
                session_ids=tuple(session_ids), pairs=pairs, job_id=job_id, status=status,
                verification=dict(verification or {}))
            self._store.put(self._key(model, version, CARD), card.to_json().encode(),
                            content_type="application/json")
        except BaseException:
            # Without a card the version is invisible; removing its blobs is only tidiness.
            for key in written:
                try:
                    self._store.delete(key)
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    pass
            raise
        return card
