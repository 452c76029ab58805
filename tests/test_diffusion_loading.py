"""Model folders in the object store (local and S3 backends): upload, verified pull, the cache,
model URIs, and the `veil model` commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veil.cli import main
from veil.diffusion.loading import MANIFEST_FILE, ModelLocation, pull_model, resolve_model, upload_model
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.errors import DataLoss, InvalidArgument, NotFound
from veil.store import LocalStore, ObjectStore, StoreConfig

PREFIX = "models/tiny/v1"


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_upload_then_pull_verifies_and_reuses_the_cache(store: ObjectStore, tiny_model_dir: Path, tmp_path: Path) -> None:
    manifest = upload_model(tiny_model_dir, store, PREFIX + "/")
    source = folder_files(tiny_model_dir)
    assert set(manifest["files"]) == set(source) and "unet/diffusion_pytorch_model.safetensors" in source
    cache = tmp_path / "cache"
    folder = pull_model(store, PREFIX, cache)
    assert folder == cache / store.bucket / PREFIX
    assert {k: v for k, v in folder_files(folder).items() if k != MANIFEST_FILE} == source
    assert DiffusionAutoencoder.from_pretrained(folder).card.model_version == "tiny-test"

    (folder / "model_card.json").write_text("{}")  # a damaged cached copy is downloaded again
    assert folder_files(pull_model(store, PREFIX, cache))["model_card.json"] == source["model_card.json"]
    store.delete(f"{PREFIX}/unet/config.json")  # a good cached copy is used without downloading
    assert folder_files(pull_model(store, PREFIX, cache))["unet/config.json"] == source["unet/config.json"]
    assert sorted(os.listdir(folder.parent)) == ["v1"]  # no staging or stale folders left


def test_a_tampered_object_is_data_loss_and_nothing_is_cached(store: ObjectStore, corrupt, tiny_model_dir: Path,
                                                              tmp_path: Path) -> None:
    upload_model(tiny_model_dir, store, PREFIX)
    corrupt(store, f"{PREFIX}/unet/diffusion_pytorch_model.safetensors")
    with pytest.raises(DataLoss, match="diffusion_pytorch_model.safetensors"):
        pull_model(store, PREFIX, tmp_path / "cache")
    assert os.listdir(tmp_path / "cache" / store.bucket / "models" / "tiny") == []


def test_a_prefix_without_manifest_is_not_a_model(store: ObjectStore, tiny_model_dir: Path, tmp_path: Path) -> None:
    store.put(f"{PREFIX}/model_card.json", (tiny_model_dir / "model_card.json").read_bytes())
    with pytest.raises(NotFound, match=f"{PREFIX}/{MANIFEST_FILE} is missing"):
        pull_model(store, PREFIX, tmp_path / "cache")
    store.put(f"{PREFIX}/{MANIFEST_FILE}", b'{"format": 1, "files": {"../x": {"sha256": "00", "size": 1}}}')
    with pytest.raises(DataLoss, match="corrupt"):
        pull_model(store, PREFIX, tmp_path / "cache")


@pytest.mark.parametrize("uri, location", [
    ("models/m", ModelLocation(path=Path("models/m"))),
    ("store://a/b/", ModelLocation(prefix="a/b")),
    ("s3://veil-models/diffae/v1", ModelLocation(bucket="veil-models", prefix="diffae/v1")),
])
def test_model_uris(uri: str, location: ModelLocation) -> None:
    assert ModelLocation.parse(uri) == location


@pytest.mark.parametrize("uri", ["", "store://", "s3://veil-models", "s3://Bad_Bucket/x", "http://host/m", "store://a/../b"])
def test_bad_model_uris(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        ModelLocation.parse(uri)


def test_s3_uri_names_another_bucket_of_the_store(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = StoreConfig(backend="local", root=str(tmp_path / "objects"), bucket="veil")
    upload_model(tiny_model_dir, LocalStore(config.root, "veil-models"), "diffae/v1")
    folder = resolve_model("s3://veil-models/diffae/v1", config, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "veil-models" / "diffae" / "v1"
    assert resolve_model(str(tiny_model_dir), config, tmp_path / "cache") == tiny_model_dir


def test_model_commands(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VEIL_STORE_BACKEND", "local")
    monkeypatch.setenv("VEIL_STORE_ROOT", str(tmp_path / "objects"))
    assert main(["model", "upload", str(tiny_model_dir), "store://m/v1"]) == 0
    assert main(["model", "pull", "store://m/v1", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "and the manifest to veil/m/v1" in out and str(tmp_path / "cache" / "veil" / "m" / "v1") in out
    assert main(["model", "pull", "store://m/none", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "m/none/model_manifest.json is missing" in capsys.readouterr().err
