"""The CelebA on-disk format: read it (real CelebA works unchanged) and write it (synthetic faces).

A data set root holds the images and three text files:

* ``list_attr_celeba.txt``: a count line, a line of attribute names, then ``file v1 v2 ...`` rows
  with values 1 / -1;
* ``identity_CelebA.txt``: ``file identity`` rows;
* ``list_eval_partition.txt`` (optional): ``file split`` rows, 0 train, 1 validation, 2 test.

Images live in ``img_align_celeba/`` when that folder exists (CelebA's layout), else in the root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from veil.errors import InvalidArgument, quoted

ATTR_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
SPLITS = {"train": 0, "val": 1, "test": 2}


class DataFormatError(InvalidArgument):
    """An annotation file or image does not follow the CelebA format; the message names file and line."""


@dataclass
class CelebA:
    """An in-memory CelebA-format data set (images already at the requested size)."""

    root: Path
    filenames: list[str]
    images: np.ndarray  # uint8 (N, H, W, 3)
    attributes: np.ndarray  # int8 (N, A), values -1 / +1
    attribute_names: list[str]
    identities: np.ndarray  # int64 (N,)
    partition: np.ndarray  # int8 (N,), 0 train / 1 val / 2 test; all 0 when the file is absent

    def __len__(self) -> int:
        return len(self.filenames)

    def attribute_index(self, name: str) -> int:
        try:
            return self.attribute_names.index(name)
        except ValueError:
            raise InvalidArgument(f"unknown attribute {quoted(name)}; this data set has {', '.join(self.attribute_names)}") from None

    def subset(self, index: np.ndarray | Sequence[int]) -> CelebA:
        idx = np.asarray(index)
        return CelebA(
            root=self.root,
            filenames=[self.filenames[i] for i in np.arange(len(self))[idx]],
            images=self.images[idx],
            attributes=self.attributes[idx],
            attribute_names=list(self.attribute_names),
            identities=self.identities[idx],
            partition=self.partition[idx],
        )

    def split(self, name: str) -> CelebA:
        if name not in SPLITS:
            raise InvalidArgument(f"unknown split {quoted(name)}; expected one of {', '.join(SPLITS)}")
        return self.subset(self.partition == SPLITS[name])

    def fingerprint(self) -> str:
        """sha256 over the annotation files: names the data version in model cards."""
        digest = hashlib.sha256()
        for name in (ATTR_FILE, IDENTITY_FILE, PARTITION_FILE):
            path = self.root / name
            if path.exists():
                digest.update(path.read_bytes())
        return digest.hexdigest()


def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if parts:
                yield number, parts


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(filenames, attribute names, int8 values) of a list_attr_celeba.txt."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    rows = iter(_rows(path))
    try:
        line, first = next(rows)
        count = int(first[0])
        if len(first) != 1 or count < 0:
            raise ValueError
    except StopIteration:
        raise DataFormatError(f"{path}: empty file") from None
    except ValueError:
        raise DataFormatError(f"{path}:{line}: expected the image count on the first line") from None
    try:
        _, names = next(rows)
    except StopIteration:
        raise DataFormatError(f"{path}: missing the attribute-name line") from None
    filenames: list[str] = []
    values: list[list[int]] = []
    for line, parts in rows:
        if len(parts) != len(names) + 1:
            raise DataFormatError(f"{path}:{line}: expected {len(names) + 1} columns (file + {len(names)} attributes), got {len(parts)}")
        try:
            row = [int(v) for v in parts[1:]]
        except ValueError:
            row = [2]
        if any(v not in (1, -1) for v in row):
            raise DataFormatError(f"{path}:{line}: attribute values must be 1 or -1")
        filenames.append(parts[0])
        values.append(row)
    if len(filenames) != count:
        raise DataFormatError(f"{path}: the count line says {count} images but {len(filenames)} rows follow")
    if len(set(filenames)) != len(filenames):
        raise DataFormatError(f"{path}: duplicate file names")
    return filenames, names, np.asarray(values, dtype=np.int8).reshape(len(filenames), len(names))


def _read_mapping(path: Path, known: dict[str, int], what: str, skip_unknown: bool = False) -> np.ndarray:
    """A `file value` column as int64 in `known`'s order (-1 where a file has no row).

    `skip_unknown` tolerates rows for files outside `known` (a data set read with a limit).
    """
    out = np.full(len(known), -1, dtype=np.int64)
    for line, parts in _rows(path):
        if len(parts) != 2:
            raise DataFormatError(f"{path}:{line}: expected 2 columns (file {what}), got {len(parts)}")
        name, value = parts
        if name not in known:
            if skip_unknown:
                continue
            raise DataFormatError(f"{path}:{line}: unknown file {name!r} (not in {ATTR_FILE})")
        try:
            out[known[name]] = int(value)
        except ValueError:
            raise DataFormatError(f"{path}:{line}: {what} must be an integer, got {value!r}") from None
    return out


def image_dir(root: Path) -> Path:
    return root / IMAGE_DIR if (root / IMAGE_DIR).is_dir() else root


def load_image(path: Path, size: int | None = None) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3), centre-cropped to a square and resized when `size` is set."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable image ({exc})") from None
    if size is not None:
        w, h = rgb.size
        side = min(w, h)
        if (w, h) != (side, side):
            left, top = (w - side) // 2, (h - side) // 2
            rgb = rgb.crop((left, top, left + side, top + side))
        if side != size:
            rgb = rgb.resize((size, size), Image.BOX if side > size else Image.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def load_celeba(root: str | Path, size: int | None = None, limit: int | None = None) -> CelebA:
    """Read a CelebA-format data set into memory, images resized to `size` x `size`."""
    root = Path(root)
    filenames, names, values = read_attributes(root / ATTR_FILE)
    if limit is not None:
        filenames, values = filenames[:limit], values[:limit]
    known = {name: i for i, name in enumerate(filenames)}
    if (root / IDENTITY_FILE).is_file():
        identities = _read_mapping(root / IDENTITY_FILE, known, "identity", skip_unknown=limit is not None)
        missing = [filenames[i] for i in np.flatnonzero(identities < 0)[:3]]
        if missing:
            raise DataFormatError(f"{root / IDENTITY_FILE}: no identity for {', '.join(missing)}")
    else:
        raise DataFormatError(f"{root / IDENTITY_FILE}: file not found")
    partition = np.zeros(len(filenames), dtype=np.int8)
    if (root / PARTITION_FILE).is_file():
        parts = _read_mapping(root / PARTITION_FILE, known, "split", skip_unknown=limit is not None)
        if np.any((parts < 0) | (parts > 2)):
            raise DataFormatError(f"{root / PARTITION_FILE}: every file needs a split of 0, 1 or 2")
        partition = parts.astype(np.int8)
    folder = image_dir(root)
    images = [load_image(folder / name, size) for name in filenames]
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise DataFormatError(f"{root}: images have different sizes {sorted(shapes)}; pass a size to resize them")
    stacked = np.stack(images) if images else np.zeros((0, size or 0, size or 0, 3), np.uint8)
    return CelebA(root, filenames, stacked, values, names, identities, partition)


def write_annotations(root: Path, filenames: Sequence[str], attribute_names: Sequence[str],
                      attributes: np.ndarray, identities: Sequence[int], partition: Sequence[int]) -> None:
    """Write the three annotation files (each atomically: a reader never sees half a file)."""
    width = max(len(n) for n in filenames) if filenames else 10
    attr_lines = [str(len(filenames)), " ".join(attribute_names)]
    attr_lines += [f"{name:<{width}} " + " ".join(f"{int(v):>2}" for v in row) for name, row in zip(filenames, attributes)]
    _write_text(root / ATTR_FILE, attr_lines)
    _write_text(root / IDENTITY_FILE, [f"{n} {int(i)}" for n, i in zip(filenames, identities)])
    _write_text(root / PARTITION_FILE, [f"{n} {int(p)}" for n, p in zip(filenames, partition)])


def _write_text(path: Path, lines: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
