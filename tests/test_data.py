"""The CelebA-format loader and the synthetic face generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from veil.cli import main as cli
from veil.data import ATTRIBUTES, DataFormatError, generate_dataset, load_celeba
from veil.data.synth import attributes_of, render, sample_appearance, sample_identity


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.iterdir()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", identities=3, per_identity=3, seed=7, workers=1)
    b = generate_dataset(tmp_path / "b", identities=3, per_identity=3, seed=7, workers=2)
    c = generate_dataset(tmp_path / "c", identities=3, per_identity=3, seed=8, workers=1)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_cli_writes_loadable_celeba(tmp_path: Path) -> None:
    out = tmp_path / "faces"
    assert cli(["data", "synth", "--out", str(out), "--identities", "4", "--per-identity", "5",
                "--seed", "1", "--workers", "1"]) == 0
    data = load_celeba(out, size=32)
    assert data.images.shape == (20, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.attribute_names == list(ATTRIBUTES)
    assert set(np.unique(data.attributes)) <= {-1, 1}
    assert list(np.bincount(data.identities)) == [5, 5, 5, 5]
    # one photo per identity held out by default (a fifth of 5)
    assert (data.partition == 2).sum() == 4 and len(data.split("train")) == 16


def test_attribute_correlations_are_realistic() -> None:
    people = [sample_identity(0, i) for i in range(600)]
    looks = [sample_appearance(0, p, 0) for p in people]
    labels = np.array([[attributes_of(p, l)[a] for a in ATTRIBUTES] for p, l in zip(people, looks)])
    col = {a: labels[:, i] for i, a in enumerate(ATTRIBUTES)}
    assert not np.any(~col["No_Beard"] & ~col["Male"]), "beards occur only on men"
    assert 0.35 < col["Male"].mean() < 0.55
    assert col["Heavy_Makeup"][~col["Male"]].mean() > 0.4 > col["Heavy_Makeup"][col["Male"]].mean()
    assert col["Blond_Hair"][~col["Male"]].mean() > 2 * col["Blond_Hair"][col["Male"]].mean()
    assert not np.any(col["Blond_Hair"] & col["Black_Hair"])
    for a in ATTRIBUTES:
        assert 0.02 < col[a].mean() < 0.98, f"{a} must vary"


def test_identity_is_stable_and_photos_vary() -> None:
    person = sample_identity(5, 11)
    assert person == sample_identity(5, 11)
    a = np.asarray(render(person, sample_appearance(5, person, 0)), np.float32)
    b = np.asarray(render(person, sample_appearance(5, person, 1)), np.float32)
    assert np.abs(a - b).mean() > 5, "two photos of one person must differ (pose, light, background)"


def test_attribute_edit_keeps_geometry_and_changes_the_image() -> None:
    person = sample_identity(2, 3)
    flipped = person.with_attributes(Male=not person.male)
    assert flipped.face_w == person.face_w and flipped.eye_spacing == person.eye_spacing
    assert flipped.male != person.male and not (flipped.beard and not flipped.male)
    look = sample_appearance(2, person, 0)
    diff = np.abs(np.asarray(render(person, look), np.float32) - np.asarray(render(flipped, look), np.float32))
    assert diff.mean() > 2


def _write(root: Path, attr: str, ident: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_text(attr)
    if ident is not None:
        (root / "identity_CelebA.txt").write_text(ident)


@pytest.mark.parametrize(
    ("attr", "ident", "message"),
    [
        ("1\nMale Young\na.png 1\n", "a.png 1\n", "list_attr_celeba.txt:3: expected 3 columns"),
        ("1\nMale Young\na.png 1 0\n", "a.png 1\n", "list_attr_celeba.txt:3: attribute values must be 1 or -1"),
        ("1\nMale Young\na.png 1 yes\n", "a.png 1\n", "list_attr_celeba.txt:3: attribute values must be 1 or -1"),
        ("2\nMale Young\na.png 1 -1\n", "a.png 1\n", "count line says 2 images but 1 rows"),
        ("x\nMale\n", "", "list_attr_celeba.txt:1: expected the image count"),
        ("1\nMale Young\na.png 1 -1\n", "a.png 1\nb.png 2\n", "identity_CelebA.txt:2: unknown file 'b.png'"),
        ("1\nMale Young\na.png 1 -1\n", "a.png 1 3\n", "identity_CelebA.txt:1: expected 2 columns"),
        ("1\nMale Young\na.png 1 -1\n", None, "identity_CelebA.txt: file not found"),
    ],
)
def test_malformed_annotations_name_file_and_line(tmp_path: Path, attr: str, ident: str | None, message: str) -> None:
    _write(tmp_path, attr, ident)
    with pytest.raises(DataFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_celeba(tmp_path)


def test_missing_or_corrupt_image_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "1\nMale\na.png 1\n", "a.png 1\n")
    with pytest.raises(DataFormatError, match="a.png: image file not found"):
        load_celeba(tmp_path)
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="a.png: not a readable image"):
        load_celeba(tmp_path)


def test_real_celeba_layout_is_read(tmp_path: Path) -> None:
    """CelebA keeps images in img_align_celeba/ at 178x218: crop to a square, resize."""
    from PIL import Image

    (tmp_path / "img_align_celeba").mkdir(parents=True)
    Image.new("RGB", (178, 218), (200, 10, 10)).save(tmp_path / "img_align_celeba" / "000001.jpg")
    _write(tmp_path, "1\n5_o_Clock_Shadow Male\n000001.jpg -1  1\n", "000001.jpg 2880\n")
    data = load_celeba(tmp_path, size=64)
    assert data.images.shape == (1, 64, 64, 3)
    assert data.identities.tolist() == [2880] and data.partition.tolist() == [0]
    assert abs(int(data.images[0, 32, 32, 0]) - 200) <= 3
