"""`veil anonymize`: one file and a folder; every bad input is a clear error that writes nothing."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from test_images import png_header_only

from veil.cli import main as cli
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.privacy import PrivacySettings
from veil.faces import Box


def test_whole_photos_in_their_own_format(tiny_model_dir: Path, inputs: Path, tmp_path: Path) -> None:
    """A folder with a model-size crop (as before), a portrait as PNG and as JPEG: each photo's face
    is replaced, the rest of the PNG is bit-identical, and the receipt lists every face."""
    photo = data.astronaut()
    Image.fromarray(photo).save(inputs / "astronaut.png")
    Image.fromarray(photo).save(inputs / "portrait.jpg", quality=95)
    out = tmp_path / "out"
    assert _run(tiny_model_dir, str(inputs), "--out", str(out), "--level", "8", "--seed", "1") == 0
    assert Image.open(out / "000001.png").size == (16, 16)
    assert Image.open(out / "portrait.jpg").format == "JPEG"
    result = np.asarray(Image.open(out / "astronaut.png"))
    faces = json.loads((out / "astronaut.receipt.json").read_text())["faces"]
    face = max(faces, key=lambda f: Box(*f["box"]).iou(Box(179, 83, 266, 170)))
    assert face["action"] == "anonymized" and face["receipt"]["level"] == 8
    changed = np.any(result != photo, axis=-1)
    assert changed[110:150, 200:245].mean() > 0.9
    for other in faces:
        left, top, right, bottom = other["region"]
        changed[top:bottom, left:right] = False
    assert not changed.any()


@pytest.fixture()
def inputs(tiny_faces: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("000001.png", "000002.png"):
        Image.open(tiny_faces / name).convert("RGB").resize((16, 16), Image.BOX).save(folder / name)
    return folder


def _run(model: Path, *args: str, decode_tries: int = 0) -> int:
    """Unverified unless asked: the tiny model's classifier refuses many of its own decodes."""
    return cli(["anonymize", *args, "--model", str(model), "--steps", "2", "--decode-tries", str(decode_tries)])


def test_one_file_with_candidates(tiny_model_dir: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "face.png"
    assert _run(tiny_model_dir, str(inputs / "000001.png"), "--out", str(out), "--protect", "Male,Young",
                "--level", "6", "--candidates", "2", "--seed", "4") == 0
    for c in (0, 1):
        image = Image.open(out.with_name(f"face-{c}.png"))
        assert image.size == (16, 16) and image.mode == "RGB"
        faces = json.loads(out.with_name(f"face-{c}.receipt.json").read_text())["faces"]
        whole_crop = [("anonymized", [0, 0, 16, 16], [])]
        assert [(f["action"], f["box"], f["unverified_attributes"]) for f in faces] == whole_crop
        receipt = faces[0]["receipt"]
        assert receipt["level"] == 6 and receipt["seed"] == 4 and receipt["candidate"] == c
        assert [a["attribute"] for a in receipt["attributes"]] == ["Male", "Young"]


def test_refused_candidates_are_named_and_not_written(tiny_model_dir: Path, inputs: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Verified edits: the files written are the candidates the library offers for the same seed;
    each refused one is named on stderr with the attributes that never read as released."""
    crop = np.asarray(Image.open(inputs / "000001.png"))
    model = DiffusionAutoencoder.from_pretrained(tiny_model_dir)
    anonymizer = Anonymizer(model, dataclasses.replace(model.card.sampling, steps=2), decode_tries=2)
    settings = PrivacySettings.from_level(3, ["Male", "Young"], model.attribute_names)
    seed, [expected] = next((s, e) for s in range(1, 60)
                            for e in [anonymizer.verified(anonymizer.prepare([crop]), settings, 4, s)]
                            if len({c.offered for c in e[0]}) == 2)
    out = tmp_path / "out" / "face.png"
    assert _run(tiny_model_dir, str(inputs / "000001.png"), "--out", str(out), "--protect", "Male,Young",
                "--level", "3", "--candidates", "4", "--seed", str(seed), decode_tries=2) == 0
    err = capsys.readouterr().err
    for c, want in enumerate(expected):
        path = out.with_name(f"face-{c}.png")
        if want.offered:
            assert np.array_equal(np.asarray(Image.open(path)), want.image.image)
            [face] = json.loads(path.with_suffix(".receipt.json").read_text())["faces"]
            assert face["receipt"]["decode_tries"] == want.tries and face["unverified_attributes"] == []
        else:
            assert not path.exists() and not path.with_suffix(".receipt.json").exists()
            assert (f"{path}: refused: face 0 still read {', '.join(want.disagreeing)} otherwise than released "
                    f"after 2 decode(s)") in err


def test_folder_with_explicit_eps(tiny_model_dir: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(tiny_model_dir, str(inputs), "--out", str(out), "--protect", "Male", "--eps", "Male=0.5",
                "--mechanism", "laplace", "--identity-eps", "8", "--rho", "0.2") == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001.png", "000001.receipt.json", "000002.png",
                                                     "000002.receipt.json"]
    receipt = json.loads((out / "000002.receipt.json").read_text())["faces"][0]["receipt"]
    assert receipt["attributes"][0]["mechanism"] == "laplace" and receipt["identity_epsilon"] == 8.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protect", "Mail", "--level", "3"], "unknown attribute(s) 'Mail'"),
        (["--protect", "Male", "--eps", "Male=0"], "Male: epsilon must be finite and > 0"),
        (["--protect", "Male", "--eps", "Male=nan"], "Male: epsilon must be finite and > 0"),
        (["--protect", "Male", "--eps", "Male=-1"], "Male: epsilon must be finite and > 0"),
        (["--level", "12"], "privacy level must be an integer in 0..10"),
        (["--candidates", "0"], "candidates must be an integer in 1..8"),
    ],
)
def test_bad_arguments_write_nothing(tiny_model_dir: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     args: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert _run(tiny_model_dir, str(inputs), "--out", str(out), *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "not a readable PNG, JPEG or WebP"),
        (lambda p: p.write_bytes(png_header_only(5000, 5000)), "5000x5000 is larger than 4096 px"),
    ],
)
def test_one_bad_image_in_a_folder_writes_nothing(tiny_model_dir: Path, inputs: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], make, message: str) -> None:
    make(inputs / "bad.png")
    out = tmp_path / "out"
    assert _run(tiny_model_dir, str(inputs), "--out", str(out), "--level", "2") == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and message in err
    assert not out.exists()


def test_missing_input(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tiny_model_dir, str(tmp_path / "nope.png"), "--out", str(tmp_path / "o.png")) == 2
    assert "no such file or folder" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)
