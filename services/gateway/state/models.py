"""Value types of the gateway's state: what the repository takes and returns (no SQL, no gRPC).

The privacy settings of a session and its rounds are veil.privacy.PrivacySettings.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from veil.errors import InvalidArgument, quoted
from veil.ledger import LedgerEvent, ReleaseSpend
from veil.privacy import PrivacySettings

_SHA256 = re.compile(r"[0-9a-f]{64}")


class SessionState(str, enum.Enum):
    ACTIVE = "active"
    ACCEPTED = "accepted"
    CLOSED = "closed"
    FAILED = "failed"


class FeedbackKind(str, enum.Enum):
    MORE_PRIVACY = "more_privacy"
    LESS_PRIVACY = "less_privacy"
    SET_EPSILON = "set_epsilon"
    ACCEPT = "accept"


class ReleaseState(str, enum.Enum):
    PENDING = "pending"        # charged, not yet copied to its published key
    PUBLISHED = "published"


def require_sha256(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidArgument(f"{what}: expected a lowercase hex sha256, got {quoted(value)}")
    return value


def require_id(value: str, what: str, max_len: int = 128) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        raise InvalidArgument(f"{what} must be 1..{max_len} printable characters, got {quoted(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """An object-store reference: bucket, key (relative to the tenant's prefix), content hash."""

    bucket: str
    key: str
    sha256: str
    size: int
    content_type: str
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        require_id(self.bucket, "bucket", 63)
        require_id(self.key, "object key", 1024)
        require_sha256(self.sha256, f"sha256 of {self.key}")
        if self.size < 0 or self.width < 0 or self.height < 0:
            raise InvalidArgument(f"{self.key}: size and geometry must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredObject:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One generated image of a round. `spend` is what accepting it charges (every anonymized
    face); `receipt` (the first anonymized face's) and `faces` (each face's box, score, action
    and receipt) are the anonymizer's, as JSON, kept opaque for the servicer to return to clients."""

    index: int
    image: StoredObject
    spend: ReleaseSpend
    model_version: str
    receipt: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    faces: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "image": self.image.to_json(), "spend": self.spend.to_json(),
                "model_version": self.model_version, "receipt": dict(self.receipt),
                "faces": [dict(face) for face in self.faces]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(index=data["index"], image=StoredObject.from_json(data["image"]),
                   spend=ReleaseSpend.from_json(data["spend"]),
                   model_version=data["model_version"], receipt=data["receipt"],
                   faces=tuple(data.get("faces", ())))  # rounds stored before photos have none


@dataclasses.dataclass(frozen=True)
class RefusedCandidate:
    """A candidate of a round the anonymizer did not offer (an edit it could not verify): why,
    and its faces as JSON (the refusing ones name their unverified attributes). No image."""

    index: int
    reason: str
    faces: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "faces": [dict(face) for face in self.faces]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RefusedCandidate:
        return cls(index=data["index"], reason=data["reason"], faces=tuple(data["faces"]))


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    session_id: str
    number: int
    settings: PrivacySettings
    candidates: tuple[Candidate, ...]  # offered, by index; together with `refused` 0..n-1
    feedback: FeedbackKind | None
    next_settings: PrivacySettings | None   # what the feedback asked the next round to use
    created_at: datetime
    feedback_at: datetime | None
    feedback_request_id: str | None = None
    refused: tuple[RefusedCandidate, ...] = ()

    def candidate(self, index: int) -> Candidate:
        """The offered candidate `index`; InvalidArgument naming why there is none."""
        for candidate in self.candidates:
            if candidate.index == index:
                return candidate
        for refused in self.refused:
            if refused.index == index:
                raise InvalidArgument(f"candidate {index} of round {self.number} was not offered: {refused.reason}")
        offered = [c.index for c in self.candidates]
        raise InvalidArgument(f"no candidate {index} in round {self.number}; offered: {offered or 'none'}")


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    session_id: str
    tenant: str
    subject_id: str
    state: SessionState
    protect: tuple[str, ...]
    original: StoredObject
    settings: PrivacySettings          # the starting settings; each round carries its own
    candidates_per_round: int
    seed: int
    round_count: int
    created_at: datetime
    updated_at: datetime
    original_deleted_at: datetime | None
    request_id: str | None = None       # of the CreateSession that made it


@dataclasses.dataclass(frozen=True)
class ReleaseRecord:
    release_id: str
    tenant: str
    session_id: str
    subject_id: str
    request_id: str
    round_number: int
    candidate_index: int
    receipt_id: str
    source: StoredObject               # the candidate object
    target: StoredObject               # where it is published (same bytes)
    state: ReleaseState
    ledger_entry_id: str
    created_at: datetime
    published_at: datetime | None


@dataclasses.dataclass(frozen=True)
class LedgerSummary:
    subject_id: str
    composed_epsilon: float
    sum_epsilon: float
    delta: float
    cap: float
    entry_count: int
    # What one more attribute release may spend and be admitted (veil.ledger.admissible_epsilon).
    remaining: float


@dataclasses.dataclass(frozen=True)
class LedgerEntryRecord:
    entry_id: str
    subject_id: str
    session_id: str | None
    receipt_id: str
    epsilon: float                     # nominal eps of this release (its share of the plain sum)
    events: tuple[LedgerEvent, ...]
    composed_after: float
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class Charge:
    entry: LedgerEntryRecord
    summary: LedgerSummary             # totals after the charge


@dataclasses.dataclass(frozen=True)
class AcceptResult:
    """What `SessionStore.accept` committed. `replayed` is True when the same request had
    already been accepted (nothing new was charged)."""

    session: SessionRecord
    release: ReleaseRecord
    charge: Charge
    unlearning_request_ids: tuple[str, ...]
    replayed: bool
