"""What a job does, as stored in its row (JSON): everything a resumed attempt needs to redo it
exactly, fixed when the request was accepted (the architecture too, so a change of
VEIL_CLASSIFIER_* does not change a queued job)."""

from __future__ import annotations

from dataclasses import dataclass

from veil.unlearning.manifest import PinnedObject, ReplacementPair
from veil.unlearning.params import TrainConfig, UnlearnParams


@dataclass(frozen=True)
class TrainSpec:
    manifest_key: str
    manifest_sha256: str | None
    config: TrainConfig
    channels: tuple[int, ...]
    embedding_dim: int

    def to_json(self) -> dict:
        return {"manifest_key": self.manifest_key, "manifest_sha256": self.manifest_sha256,
                "config": self.config.to_dict(), "channels": list(self.channels),
                "embedding_dim": self.embedding_dim}

    @classmethod
    def from_json(cls, data: dict) -> TrainSpec:
        return cls(data["manifest_key"], data["manifest_sha256"], TrainConfig.from_dict(data["config"]),
                   tuple(data["channels"]), int(data["embedding_dim"]))


@dataclass(frozen=True)
class UnlearnSpec:
    pairs: tuple[ReplacementPair, ...]
    params: UnlearnParams

    def to_json(self) -> dict:
        return {"pairs": [{"original": p.original.to_dict(), "replacement": p.replacement.to_dict(),
                           "session_id": p.session_id} for p in self.pairs],
                "params": self.params.to_dict()}

    @classmethod
    def from_json(cls, data: dict) -> UnlearnSpec:
        pairs = tuple(ReplacementPair(PinnedObject(**p["original"]), PinnedObject(**p["replacement"]),
                                      p["session_id"]) for p in data["pairs"])
        return cls(pairs, UnlearnParams(**data["params"]))
