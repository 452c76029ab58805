"""Object-store fixtures: a real `nanio` S3 server (checks SigV4 signatures) on 127.0.0.1, and
`store`, parametrised over the local-directory and S3 backends for the contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veil_tools.localrun import free_port
from veil.store import LocalStore, ObjectStore
from veil.store.local import HEADER_SIZE
from veil_tools.nanio import ACCESS_KEY, SECRET_KEY, NanioServer
from veil.store.s3 import S3Store

__all__ = ["ACCESS_KEY", "SECRET_KEY", "NanioServer", "free_port"]


@pytest.fixture(scope="session")
def nanio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NanioServer]:
    server = NanioServer(tmp_path_factory.mktemp("nanio"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_nanio(tmp_path: Path) -> Iterator[NanioServer]:
    """A nanio server of the test's own, for tests that stop it."""
    server = NanioServer(tmp_path / "nanio")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_store(nanio: NanioServer) -> S3Store:
    store = S3Store(nanio.config())
    store.ensure_bucket()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects", bucket="veil")
    return request.getfixturevalue("s3_store")


@pytest.fixture
def corrupt(request: pytest.FixtureRequest, tmp_path: Path):
    """corrupt(store, key): flip one stored content byte behind the store's back."""

    def flip(store: ObjectStore, key: str) -> None:
        if isinstance(store, LocalStore):
            path, offset = store.root / store.bucket / key, HEADER_SIZE
        else:
            path, offset = request.getfixturevalue("nanio").object_file(store.bucket, key), 0
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))

    return flip
