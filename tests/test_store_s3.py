"""S3 backend failure cases against a real nanio server: credentials, buckets, outages."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from fixtures_store import ACCESS_KEY, SECRET_KEY, NanioServer

from veil.errors import FailedPrecondition, PermissionDenied, Unauthenticated, Unavailable
from veil.store.s3 import S3Store


@pytest.mark.parametrize("wrong", ["secret", "access_key"])
def test_wrong_credentials_give_a_clear_error(nanio: NanioServer, s3_store: S3Store, wrong: str) -> None:
    s3_store.put("k", b"private")
    overrides = ({"s3_secret_key": "not-the-secret-key"} if wrong == "secret"
                 else {"s3_access_key": "intruder"})
    bad = S3Store(nanio.config(bucket=s3_store.bucket, **overrides))
    access_key = overrides.get("s3_access_key", ACCESS_KEY)

    with pytest.raises(Unauthenticated) as put_error:
        bad.put("k", b"overwrite attempt")
    message = str(put_error.value)
    assert nanio.endpoint in message and repr(access_key) in message
    assert "VEIL_S3_SECRET_KEY" in message
    assert SECRET_KEY not in message and "not-the-secret-key" not in message
    # HEAD responses carry no error body, so a stat can only say "denied".
    with pytest.raises((Unauthenticated, PermissionDenied), match=nanio.endpoint):
        bad.stat("k")
    with pytest.raises((Unauthenticated, PermissionDenied)):
        bad.ensure_bucket()
    assert s3_store.get("k") == b"private"


def test_missing_bucket(nanio: NanioServer) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:8]}"
    strict = S3Store(nanio.config(bucket=bucket, s3_create_bucket=False))
    with pytest.raises(FailedPrecondition, match=f"bucket '{bucket}' does not exist.*VEIL_S3_CREATE_BUCKET"):
        strict.ensure_bucket()
    with pytest.raises(FailedPrecondition, match=f"bucket '{bucket}' does not exist at object store http://{nanio.endpoint}"):
        strict.put("k", b"x")
    creating = S3Store(nanio.config(bucket=bucket))
    creating.ensure_bucket()
    creating.ensure_bucket()  # idempotent
    creating.put("k", b"x")
    assert strict.get("k") == b"x"


def test_server_down_retries_then_unavailable_and_loses_nothing(private_nanio: NanioServer) -> None:
    store = S3Store(private_nanio.config(s3_retries=3, s3_backoff_seconds=0.1, s3_backoff_max_seconds=0.2))
    store.ensure_bucket()
    store.put("kept", b"stored before the outage")
    private_nanio.stop()

    start = time.monotonic()
    with pytest.raises(Unavailable) as error:
        store.put("during-outage", b"y" * (6 << 20))  # multipart-sized
    elapsed = time.monotonic() - start
    assert f"http://{private_nanio.endpoint}" in str(error.value)
    assert "gave up after 4 attempts" in str(error.value)
    # Three backoff pauses of at least 0.05, 0.1 and 0.1 s (jittered halves of 0.1, 0.2, 0.2).
    assert 0.25 <= elapsed < 5
    with pytest.raises(Unavailable):
        store.get("kept")

    private_nanio.start()
    assert store.get("kept") == b"stored before the outage"
    assert not store.exists("during-outage")
    assert [i.key for i in store.list()] == ["kept"]
    store.put("during-outage", b"y" * (6 << 20))  # the caller's retry succeeds
    assert store.stat("during-outage").size == 6 << 20


def test_retries_ride_out_a_short_outage(private_nanio: NanioServer) -> None:
    store = S3Store(private_nanio.config(s3_retries=20, s3_backoff_seconds=0.1, s3_backoff_max_seconds=0.3,
                                         s3_retry_deadline_seconds=20.0))
    store.ensure_bucket()
    private_nanio.stop()
    restart = threading.Timer(1.0, private_nanio.start)
    restart.start()
    try:
        info = store.put("after-restart", b"written once the server is back")
    finally:
        restart.join()
    assert store.get("after-restart", expected_sha256=info.sha256) == b"written once the server is back"


def test_connection_refused_is_unavailable_without_a_server() -> None:
    from fixtures_store import free_port

    from veil.store import StoreConfig

    port = free_port()
    store = S3Store(StoreConfig(backend="s3", s3_endpoint=f"127.0.0.1:{port}", s3_access_key="a",
                                s3_secret_key="b", s3_secure=False, s3_retries=1, s3_backoff_seconds=0.01))
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port} is unreachable during check of bucket"):
        store.ensure_bucket()
