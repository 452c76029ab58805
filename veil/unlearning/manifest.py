"""Dataset manifests and replacement pairs.

A manifest lists the objects a model is trained and tested on, with their labels:

    {"format": "veil.manifest/1",
     "attributes": ["Male", "Young", ...],          # label columns
     "protected_attributes": ["Male", "No_Beard"],  # never trained on; dropped when revised
     "train": [{"object": {"bucket": ..., "key": ..., "sha256": ...}, "labels": [1, 0, ...]}, ...],
     "test":  [...]}

Optionally (same format, so manifests without canaries keep their bytes and hashes) a manifest
describes a canary, a patch planted in some training originals and tied to a label
(veil.unlearning.canary), and marks those entries:

     "canary": {"attribute": "Eyeglasses", "label": 1, "size": 5, "seed": 7},
     "train": [{"object": ..., "labels": [...], "canary": true}, ...]

Labels are 0/1, or null where unknown. Models predict the task attributes (the columns that are not
protected). The serialisation is canonical (sorted keys, no spaces), so the manifest's hash is the
sha256 of its stored bytes. Revising a manifest swaps the objects of replaced training entries and
forgets their protected labels and canary marks: the original values must not outlive the
originals, and a replacement does not carry the canary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from veil.errors import InvalidArgument, quoted
from veil.store.keys import validate_bucket, validate_key, validate_sha256

MANIFEST_FORMAT = "veil.manifest/1"
PAIRS_COLUMNS = ("original_key", "original_sha256", "replacement_key", "replacement_sha256")


@dataclass(frozen=True)
class PinnedObject:
    """An object in the store, pinned to its content."""

    bucket: str
    key: str
    sha256: str

    def __post_init__(self) -> None:
        validate_bucket(self.bucket)
        validate_key(self.key)
        validate_sha256(self.sha256)

    def to_dict(self) -> dict:
        return {"bucket": self.bucket, "key": self.key, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: object, where: str) -> PinnedObject:
        if not isinstance(data, dict) or not all(isinstance(data.get(f), str)
                                                 for f in ("bucket", "key", "sha256")):
            raise InvalidArgument(f"{where}: an object ref needs string bucket, key and sha256")
        try:
            return cls(data["bucket"], data["key"], data["sha256"])
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ManifestEntry:
    object: PinnedObject
    labels: tuple[int | None, ...]
    # The object carries the manifest's canary patch.
    canary: bool = False


@dataclass(frozen=True)
class Canary:
    """A patch of seeded random colours (`size` pixels square, bottom-right corner) tied to
    `label` of `attribute`; how it is drawn and measured is veil.unlearning.canary's."""

    attribute: str
    label: int
    size: int
    seed: int

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise InvalidArgument(f"a canary's label is 0 or 1, got {self.label}")
        if self.size < 1:
            raise InvalidArgument(f"a canary's patch size must be >= 1, got {self.size}")

    def to_dict(self) -> dict:
        return {"attribute": self.attribute, "label": self.label, "size": self.size, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: object, where: str) -> Canary:
        if not (isinstance(data, dict) and isinstance(data.get("attribute"), str)
                and all(isinstance(data.get(k), int) and not isinstance(data.get(k), bool)
                        for k in ("label", "size", "seed"))):
            raise InvalidArgument(f"{where}: a canary needs a string attribute and integer label, "
                                  "size and seed")
        return cls(data["attribute"], data["label"], data["size"], data["seed"])


@dataclass(frozen=True)
class ReplacementPair:
    """An original training object and the protected image that replaces it."""

    original: PinnedObject
    replacement: PinnedObject
    # The gateway session that produced the replacement (recorded in the child's card).
    session_id: str = ""


@dataclass(frozen=True)
class Manifest:
    attributes: tuple[str, ...]
    protected_attributes: tuple[str, ...]
    train: tuple[ManifestEntry, ...]
    test: tuple[ManifestEntry, ...]
    canary: Canary | None = None

    def __post_init__(self) -> None:
        if len(set(self.attributes)) != len(self.attributes):
            raise InvalidArgument("manifest attributes must be unique")
        unknown = [a for a in self.protected_attributes if a not in self.attributes]
        if unknown:
            raise InvalidArgument(f"protected attributes {unknown} are not manifest attributes")
        if not self.task_attributes:
            raise InvalidArgument("every manifest attribute is protected: nothing to train on")
        if not self.train or not self.test:
            raise InvalidArgument("a manifest needs at least one train and one test entry")
        for split, entries in (("train", self.train), ("test", self.test)):
            for index, entry in enumerate(entries):
                if len(entry.labels) != len(self.attributes):
                    raise InvalidArgument(f"manifest {split}[{index}] has {len(entry.labels)} labels, "
                                          f"expected {len(self.attributes)}")
                if any(v not in (0, 1, None) for v in entry.labels):
                    raise InvalidArgument(f"manifest {split}[{index}]: labels must be 0, 1 or null")
        task_columns = self.columns(self.task_attributes)
        for split, entries in (("train", self.train), ("test", self.test)):
            for index, entry in enumerate(entries):
                if any(entry.labels[c] is None for c in task_columns):
                    raise InvalidArgument(f"manifest {split}[{index}] lacks a task label")
        marked = any(e.canary for e in self.train + self.test)
        if marked and self.canary is None:
            raise InvalidArgument("manifest entries are marked as canaries but no canary is described")
        if self.canary is not None and self.canary.attribute not in self.task_attributes:
            raise InvalidArgument(f"the canary's attribute {quoted(self.canary.attribute)} is not a task "
                                  "attribute of the manifest")

    @property
    def task_attributes(self) -> tuple[str, ...]:
        return tuple(a for a in self.attributes if a not in self.protected_attributes)

    def columns(self, names: Sequence[str]) -> list[int]:
        missing = [n for n in names if n not in self.attributes]
        if missing:
            raise InvalidArgument(f"unknown attributes {missing}; the manifest has "
                                  f"{', '.join(self.attributes)}")
        return [self.attributes.index(n) for n in names]

    def to_bytes(self) -> bytes:
        def entries(items: Iterable[ManifestEntry]) -> list[dict]:
            # The canary fields only where set, so a manifest without canaries keeps its bytes.
            return [{"object": e.object.to_dict(), "labels": list(e.labels),
                     **({"canary": True} if e.canary else {})} for e in items]

        document = {"format": MANIFEST_FORMAT, "attributes": list(self.attributes),
                    "protected_attributes": list(self.protected_attributes),
                    "train": entries(self.train), "test": entries(self.test)}
        if self.canary is not None:
            document["canary"] = self.canary.to_dict()
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest") -> Manifest:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"{where} is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
            raise InvalidArgument(f"{where} is not a {MANIFEST_FORMAT} document")
        attributes = document.get("attributes")
        protected = document.get("protected_attributes", [])
        if not (isinstance(attributes, list) and all(isinstance(a, str) for a in attributes)):
            raise InvalidArgument(f"{where}: attributes must be a list of names")
        if not (isinstance(protected, list) and all(isinstance(a, str) for a in protected)):
            raise InvalidArgument(f"{where}: protected_attributes must be a list of names")

        def entries(split: str) -> tuple[ManifestEntry, ...]:
            items = document.get(split)
            if not isinstance(items, list):
                raise InvalidArgument(f"{where}: {split} must be a list of entries")
            out = []
            for index, item in enumerate(items):
                place = f"{where} {split}[{index}]"
                labels = item.get("labels") if isinstance(item, dict) else None
                if not isinstance(labels, list) or any(
                        isinstance(v, bool) or v not in (0, 1, None) for v in labels):
                    raise InvalidArgument(f"{place}: labels must be a list of 0, 1 or null")
                canary = item.get("canary", False)
                if not isinstance(canary, bool):
                    raise InvalidArgument(f"{place}: canary must be true or false")
                out.append(ManifestEntry(PinnedObject.from_dict(item.get("object"), place), tuple(labels),
                                         canary))
            return tuple(out)

        canary = document.get("canary")
        return cls(tuple(attributes), tuple(protected), entries("train"), entries("test"),
                   None if canary is None else Canary.from_dict(canary, f"{where} canary"))

    def revise(self, pairs: Sequence[ReplacementPair]) -> Manifest:
        """The manifest with each pair's original training entry replaced (see module docstring)."""
        if not pairs:
            raise InvalidArgument("no replacement pairs")
        positions = {entry.object.key: i for i, entry in enumerate(self.train)}
        replaced: dict[int, ReplacementPair] = {}
        for pair in pairs:
            position = positions.get(pair.original.key)
            if position is None:
                raise InvalidArgument(f"pair original {quoted(pair.original.key)} is not in the manifest's "
                                      "training split")
            recorded = self.train[position].object
            if recorded.sha256 != pair.original.sha256 or recorded.bucket != pair.original.bucket:
                raise InvalidArgument(
                    f"pair original {quoted(pair.original.key)} has sha256 {pair.original.sha256} in bucket "
                    f"{quoted(pair.original.bucket)}; the manifest records {recorded.sha256} in "
                    f"{quoted(recorded.bucket)}")
            if position in replaced:
                raise InvalidArgument(f"pair original {quoted(pair.original.key)} is listed twice")
            replaced[position] = pair
        protected = set(self.columns(self.protected_attributes))
        train = list(self.train)
        for position, pair in replaced.items():
            labels = tuple(None if c in protected else v for c, v in enumerate(train[position].labels))
            train[position] = ManifestEntry(pair.replacement, labels)
        return Manifest(self.attributes, self.protected_attributes, tuple(train), self.test, self.canary)

    def revised_positions(self, revised: Manifest) -> list[int]:
        """Training positions whose object differs in `revised` (a revision of this manifest)."""
        if len(revised.train) != len(self.train) or revised.attributes != self.attributes:
            raise InvalidArgument("the manifests are not revisions of one another")
        return [i for i, (a, b) in enumerate(zip(self.train, revised.train)) if a.object != b.object]


def read_pairs_csv(text: str, bucket: str) -> list[ReplacementPair]:
    """Pairs from CSV with a header naming PAIRS_COLUMNS (and optionally session_id); objects are
    in `bucket` (the store's)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in PAIRS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidArgument(f"pairs CSV lacks the columns {', '.join(missing)}; expected a header "
                              f"{','.join(PAIRS_COLUMNS)}[,session_id]")
    pairs = []
    for line, row in enumerate(reader, start=2):
        try:
            pairs.append(ReplacementPair(
                PinnedObject(bucket, row["original_key"] or "", row["original_sha256"] or ""),
                PinnedObject(bucket, row["replacement_key"] or "", row["replacement_sha256"] or ""),
                row.get("session_id") or ""))
        except InvalidArgument as exc:
            raise InvalidArgument(f"pairs CSV line {line}: {exc}") from None
    if not pairs:
        raise InvalidArgument("the pairs CSV has no rows")
    return pairs


def write_pairs_csv(pairs: Sequence[ReplacementPair]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*PAIRS_COLUMNS, "session_id"])
    for p in pairs:
        writer.writerow([p.original.key, p.original.sha256, p.replacement.key, p.replacement.sha256,
                         p.session_id])
    return out.getvalue()
