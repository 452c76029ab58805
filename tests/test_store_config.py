"""StoreConfig from the environment, open_store, and ObjectRef conversions."""

from __future__ import annotations

import pytest
from fixtures_store import SECRET_KEY, NanioServer

from veil.config import from_env
from veil.errors import ConfigError, InvalidArgument
from veil.store import LocalStore, ObjectInfo, StoreConfig, from_object_ref, open_store, to_object_ref
from veil.store.s3 import S3Store
from veil.v1 import common_pb2

SHA = "ab" * 32


def test_default_is_the_local_store(tmp_path) -> None:
    config = from_env(StoreConfig, {"VEIL_STORE_ROOT": str(tmp_path / "objects")})
    store = open_store(config)
    assert isinstance(store, LocalStore) and store.bucket == "veil"
    assert (tmp_path / "objects" / "veil").is_dir()


def test_s3_config_from_env_opens_a_working_store(nanio: NanioServer) -> None:
    env = {"VEIL_STORE_BACKEND": "s3", "VEIL_S3_ENDPOINT": nanio.endpoint, "VEIL_S3_ACCESS_KEY": "veil-test-access",
           "VEIL_S3_SECRET_KEY": SECRET_KEY, "VEIL_S3_SECURE": "false", "VEIL_S3_BUCKET": "from-env",
           "VEIL_S3_RETRIES": "2"}
    config = from_env(StoreConfig, env)
    assert SECRET_KEY not in repr(config)
    store = open_store(config)
    assert isinstance(store, S3Store) and SECRET_KEY not in repr(store)
    store.ensure_bucket()
    store.put("x", b"1")
    assert store.get("x") == b"1"


@pytest.mark.parametrize(("env", "message"), [
    ({"VEIL_STORE_BACKEND": "s3"}, "VEIL_S3_ENDPOINT is required"),
    ({"VEIL_STORE_BACKEND": "s3", "VEIL_S3_ENDPOINT": "minio:9000"}, "VEIL_S3_ACCESS_KEY is required"),
    ({"VEIL_STORE_BACKEND": "s3", "VEIL_S3_ENDPOINT": "http://minio:9000", "VEIL_S3_ACCESS_KEY": "a",
      "VEIL_S3_SECRET_KEY": "b"}, "without scheme"),
    ({"VEIL_STORE_BACKEND": "gcs"}, "must be one of local, s3"),
    ({"VEIL_S3_BUCKET": "Bad_Bucket"}, "VEIL_S3_BUCKET"),
    ({"VEIL_S3_RETRIES": "-1"}, "VEIL_S3_RETRIES"),
    ({"VEIL_S3_PART_SIZE_BYTES": "1024"}, "VEIL_S3_PART_SIZE_BYTES"),
    ({"VEIL_S3_SECURE": "maybe"}, "VEIL_S3_SECURE"),
])
def test_bad_store_config(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(StoreConfig, env)


def test_object_ref_round_trip() -> None:
    info = ObjectInfo("uploads/a.png", 123, SHA, "image/png")
    ref = to_object_ref(info, "veil")
    assert (ref.bucket, ref.key, ref.sha256, ref.size, ref.content_type) == ("veil", "uploads/a.png", SHA, 123, "image/png")
    assert from_object_ref(ref, "veil") == info
    bare = from_object_ref(common_pb2.ObjectRef(key="k"), "veil")
    assert (bare.key, bare.sha256, bare.size) == ("k", None, 0)


@pytest.mark.parametrize(("ref", "message"), [
    (common_pb2.ObjectRef(bucket="other", key="k"), "bucket 'other'"),
    (common_pb2.ObjectRef(key="../k"), "'..'"),
    (common_pb2.ObjectRef(key="k", sha256="XYZ"), "sha256"),
    (common_pb2.ObjectRef(key="k", size=-1), "negative size"),
    (common_pb2.ObjectRef(key="k", content_type="not a type"), "content type"),
])
def test_bad_object_refs(ref: common_pb2.ObjectRef, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        from_object_ref(ref, "veil")
