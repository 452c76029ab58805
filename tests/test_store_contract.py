"""One contract for every ObjectStore backend: local directory and S3 (a real nanio server)."""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from veil.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from veil.store import LocalStore, ObjectStore

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_get_stat_roundtrip(store: ObjectStore) -> None:
    data = b"\x89PNG fake but binary \x00\xff" * 100
    info = store.put("images/a.png", data, content_type="image/png")
    assert (info.key, info.size, info.sha256, info.content_type) == ("images/a.png", len(data), sha(data), "image/png")
    assert store.get("images/a.png") == data
    stat = store.stat("images/a.png")
    assert (stat.size, stat.sha256, stat.content_type) == (len(data), sha(data), "image/png")
    assert stat.last_modified is not None
    assert store.exists("images/a.png") and not store.exists("images/b.png")


def test_put_accepts_streams_and_chunk_iterables(store: ObjectStore) -> None:
    data = bytes(range(256)) * 5000
    assert store.put("s/stream", io.BytesIO(data)).sha256 == sha(data)
    assert store.get("s/stream") == data
    chunks = [data[i:i + 7777] for i in range(0, len(data), 7777)]
    assert store.put("s/chunks", iter(chunks), size=len(data), sha256=sha(data)).size == len(data)
    assert store.get("s/chunks", expected_sha256=sha(data)) == data
    assert store.put("s/empty", b"").size == 0
    assert store.get("s/empty") == b""


def test_overwrite_replaces_whole_object(store: ObjectStore) -> None:
    store.put("k", b"first version, longer than the second")
    store.put("k", b"second", content_type="text/plain")
    assert store.get("k") == b"second"
    assert store.stat("k").content_type == "text/plain"


@pytest.mark.parametrize(("declared_size", "declared_sha", "error"), [
    (11, None, InvalidArgument),
    (None, "0" * 64, DataLoss),
])
def test_declared_size_or_sha_mismatch_stores_nothing(store: ObjectStore, declared_size, declared_sha, error) -> None:
    store.put("kept", b"previous")
    with pytest.raises(error, match="declared"):
        store.put("kept", b"ten bytes!", size=declared_size, sha256=declared_sha)
    with pytest.raises(error):
        store.put("new", b"ten bytes!", size=declared_size, sha256=declared_sha)
    assert store.get("kept") == b"previous"
    assert not store.exists("new")


def test_failing_writer_stream_leaves_nothing(store: ObjectStore) -> None:
    store.put("obj", b"old content")

    def broken():
        yield b"x" * MIB
        raise OSError("upload connection dropped")

    for key in ("obj", "fresh"):
        with pytest.raises(OSError, match="upload connection dropped"):  # the source's own error
            store.put(key, broken())
    assert store.get("obj") == b"old content"
    assert not store.exists("fresh")
    assert [i.key for i in store.list()] == ["obj"]
    if isinstance(store, LocalStore):
        assert list((store.root / ".tmp").iterdir()) == []


def test_range_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    store.put("r", data)
    assert store.get("r", offset=10, length=5) == data[10:15]
    assert store.get("r", offset=1000) == data[1000:]
    assert store.get("r", offset=1020, length=100) == data[1020:]
    assert store.get("r", offset=len(data)) == b""
    assert store.get("r", length=0) == b""
    assert b"".join(store.iter_chunks("r", offset=3, length=700, chunk_size=64)) == data[3:703]
    with pytest.raises(InvalidArgument, match="past its end"):
        store.get("r", offset=len(data) + 1)
    with pytest.raises(InvalidArgument, match="offset"):
        store.get("r", offset=-1)
    with pytest.raises(InvalidArgument, match="length"):
        store.get("r", length=-2)


def test_missing_objects(store: ObjectStore) -> None:
    with pytest.raises(NotFound, match="missing/x"):
        store.get("missing/x")
    with pytest.raises(NotFound):
        store.stat("missing/x")
    with pytest.raises(NotFound):
        store.get("missing/x", offset=2, length=1)
    store.delete("missing/x")  # idempotent
    store.put("missing/y", b"1")
    store.delete("missing/y")
    store.delete("missing/y")
    assert not store.exists("missing/y")
    with pytest.raises(NotFound):
        store.copy("missing/x", "other")


def test_list_by_prefix_is_sorted_and_carries_sha(store: ObjectStore) -> None:
    contents = {"p/b": b"bb", "p/a/2": b"a2", "p/a/1": b"a1", "q/x": b"x", "pz": b"z"}
    for key, data in contents.items():
        store.put(key, data, content_type="text/plain")
    listed = list(store.list("p/"))
    assert [i.key for i in listed] == ["p/a/1", "p/a/2", "p/b"]
    assert [(i.size, i.sha256, i.content_type) for i in listed] == [
        (2, sha(contents[i.key]), "text/plain") for i in listed]
    assert [i.key for i in store.list("p")] == ["p/a/1", "p/a/2", "p/b", "pz"]
    assert [i.key for i in store.list("p/a/")] == ["p/a/1", "p/a/2"]
    assert [i.key for i in store.list("p/a/1")] == ["p/a/1"]
    assert [i.key for i in store.list()] == sorted(contents)
    assert list(store.list("nothing/")) == []


def test_copy(store: ObjectStore) -> None:
    store.put("src", b"copied bytes", content_type="image/png")
    info = store.copy("src", "dir/dst")
    assert (info.key, info.sha256, info.content_type) == ("dir/dst", sha(b"copied bytes"), "image/png")
    store.put("src", b"changed later")
    assert store.get("dir/dst") == b"copied bytes"


def test_corrupted_content_is_data_loss(store: ObjectStore, corrupt) -> None:
    data = b"some image bytes" * 1000
    info = store.put("c/img", data)
    corrupt(store, "c/img")
    with pytest.raises(DataLoss, match="sha256"):
        store.get("c/img")
    with pytest.raises(DataLoss):
        store.get("c/img", expected_sha256=info.sha256)
    # A range read cannot be verified; it returns the stored bytes.
    assert store.get("c/img", offset=1, length=5) == data[1:6]


def test_expected_sha_mismatch_is_data_loss(store: ObjectStore) -> None:
    store.put("e", b"actual")
    with pytest.raises(DataLoss, match="expected " + sha(b"other")):
        store.get("e", expected_sha256=sha(b"other"))
    with pytest.raises(InvalidArgument, match="sha256"):
        store.get("e", expected_sha256="not-hex")


def test_presigned_urls(store: ObjectStore) -> None:
    store.put("pre/a", b"downloadable")
    url = store.presigned_get_url("pre/a")
    if isinstance(store, LocalStore):
        assert url is None and store.presigned_put_url("pre/b") is None
        return
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"downloadable"
    put_url = store.presigned_put_url("pre/b")
    request = urllib.request.Request(put_url, data=b"uploaded by url", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    info = store.stat("pre/b")
    assert (info.size, info.sha256) == (15, None)  # written without the store: no stored digest
    assert store.get("pre/b") == b"uploaded by url"
    assert store.get("pre/b", expected_sha256=sha(b"uploaded by url")) == b"uploaded by url"


BAD_KEYS = ["", "../x", "a/../../x", "..", ".", "a/./b", "/etc/passwd", "a\\b", "..\\x", "a\x00b",
            "a//b", "a/", "a\nb", "a\x7fb", "a\x1bb", "x" * 1025]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    tenant = store.for_tenant("acme")
    for target in (store, tenant):
        with pytest.raises(InvalidArgument):
            target.put(key, b"x")
        with pytest.raises(InvalidArgument):
            target.get(key)
        with pytest.raises(InvalidArgument):
            target.stat(key)
        with pytest.raises(InvalidArgument):
            target.delete(key)
        with pytest.raises(InvalidArgument):
            target.copy("ok", key)
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../", "a//", "x\x00", "..", "a\\"])
def test_unsafe_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidArgument):
        list(store.for_tenant("acme").list(prefix))


@pytest.mark.parametrize("tenant_id", ["", "..", ".", "a/b", "../other", "t\x00", "-lead", "t" * 64, "t t"])
def test_invalid_tenant_ids(store: ObjectStore, tenant_id: str) -> None:
    with pytest.raises(InvalidArgument, match="tenant id"):
        store.for_tenant(tenant_id)


def test_tenants_are_isolated(store: ObjectStore) -> None:
    acme, globex = store.for_tenant("acme"), store.for_tenant("globex")
    acme.put("img/1.png", b"acme's")
    globex.put("img/1.png", b"globex's")
    assert acme.get("img/1.png") == b"acme's"
    assert globex.get("img/1.png") == b"globex's"
    assert [i.key for i in acme.list()] == ["img/1.png"]
    assert [i.key for i in store.list()] == ["tenants/acme/img/1.png", "tenants/globex/img/1.png"]
    for escape in ("../globex/img/1.png", "img/../../globex/img/1.png", "/tenants/globex/img/1.png"):
        with pytest.raises(InvalidArgument):
            acme.get(escape)
    with pytest.raises(NotFound):  # a key that merely looks like a path stays inside the prefix
        acme.get("tenants/globex/img/1.png")
    with pytest.raises(FailedPrecondition):
        acme.for_tenant("globex")
    acme.delete("img/1.png")
    assert globex.get("img/1.png") == b"globex's"


def test_large_object_streamed(store: ObjectStore) -> None:
    size = 50 * MIB
    block = hashlib.sha256(b"seed").digest() * (MIB // 32)  # 1 MiB, not compressible to zeros

    def chunks():
        for i in range(size // MIB):
            yield bytes([i]) + block[1:]

    expected = hashlib.sha256()
    for chunk in chunks():
        expected.update(chunk)
    info = store.put("big/blob", chunks())  # unknown size: streamed, staged, multipart on S3
    assert (info.size, info.sha256) == (size, expected.hexdigest())
    assert store.stat("big/blob").size == size

    seen = hashlib.sha256()
    total = 0
    for chunk in store.iter_chunks("big/blob", expected_sha256=info.sha256):
        assert len(chunk) <= MIB
        seen.update(chunk)
        total += len(chunk)
    assert (total, seen.hexdigest()) == (size, info.sha256)

    middle = store.get("big/blob", offset=25 * MIB - 3, length=6)
    assert middle == block[-3:] + bytes([25]) + block[1:3]


def test_concurrent_writers_same_key_never_mix(store: ObjectStore) -> None:
    writers = 6
    payloads = [bytes([i]) * (2 * MIB + i) for i in range(writers)]
    digests = {sha(p) for p in payloads}
    store.put("shared", payloads[0])
    stop = threading.Event()
    observed: list[str] = []
    errors: list[BaseException] = []

    def read_loop() -> None:
        while not stop.is_set():
            try:
                observed.append(sha(store.get("shared")))  # a full read is verified; a mix raises
            except BaseException as exc:
                errors.append(exc)
                return

    # Readers during the writes test our publish step. nanio (the S3 test server) reads an
    # object's metadata and its bytes in two steps, so a read racing an overwrite can pair one
    # version's sha256 with another's bytes (MinIO cannot): on S3 only the final state is checked.
    reader = threading.Thread(target=read_loop) if isinstance(store, LocalStore) else None
    if reader:
        reader.start()
    try:
        with ThreadPoolExecutor(writers) as pool:
            for _ in range(2):
                results = list(pool.map(lambda p: store.put("shared", p), payloads))
                assert {r.sha256 for r in results} == digests
    finally:
        stop.set()
        if reader:
            reader.join()
    assert errors == []
    final = store.get("shared")
    assert sha(final) in digests
    assert store.stat("shared").sha256 == sha(final)
    assert set(observed) <= digests
    if reader:
        assert len(observed) > 0


def test_concurrent_writers_different_keys(store: ObjectStore) -> None:
    payloads = {f"many/{i}": bytes([i]) * (MIB // 2 + i) for i in range(8)}
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(lambda kv: store.put(*kv), payloads.items()))
    assert {i.key: i.sha256 for i in infos} == {k: sha(v) for k, v in payloads.items()}
    for key, data in payloads.items():
        assert store.get(key) == data
