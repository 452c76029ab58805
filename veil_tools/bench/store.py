"""Object-store throughput: put and verified get, MiB/s, on both backends side by side.

LocalStore writes under a temporary directory; S3Store talks to a real `nanio` S3 server started
on loopback for the run (veil_tools.nanio), so the S3 figures include signing, HTTP and nanio's
own disk writes. Each repetition runs every (backend, size) once, backends alternating, so load
that comes and goes hits both alike. Objects are seeded random bytes (incompressible).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from veil_tools.bench.record import Figure, figure
from veil.errors import DataLoss
from veil.store import LocalStore, ObjectStore
from veil_tools.nanio import NanioServer
from veil.store.s3 import S3Store

MIB = 1 << 20


def _throughput(store: ObjectStore, key: str, data: bytes, sha256: str) -> tuple[float, float]:
    """(put MiB/s, get MiB/s) of one object."""
    started = time.perf_counter()
    store.put(key, data, sha256=sha256)
    put = time.perf_counter() - started
    started = time.perf_counter()
    body = store.get(key, expected_sha256=sha256)
    get = time.perf_counter() - started
    if len(body) != len(data):  # a truncated read would make the figure a lie
        raise DataLoss(f"{key}: read {len(body)} bytes of {len(data)}")
    store.delete(key)
    return len(data) / MIB / put, len(data) / MIB / get


def figures(sizes_mib: Sequence[int], repeats: int, seed: int) -> list[Figure]:
    rng = np.random.default_rng(seed)
    objects = {size: rng.bytes(size * MIB) for size in sizes_mib}
    digests = {size: hashlib.sha256(data).hexdigest() for size, data in objects.items()}
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="veil-bench-store-") as work:
        server = NanioServer(Path(work) / "nanio")
        server.start()
        try:
            s3 = S3Store(server.config(bucket="bench"))
            s3.ensure_bucket()
            stores: dict[str, ObjectStore] = {"local": LocalStore(Path(work) / "local", bucket="bench"),
                                              "s3": s3}
            for repeat in range(repeats):
                for size, data in objects.items():
                    for backend, store in stores.items():
                        put, get = _throughput(store, f"bench/{repeat}-{size}", data, digests[size])
                        samples.setdefault(f"store.{backend}.{size}MiB.put", []).append(put)
                        samples.setdefault(f"store.{backend}.{size}MiB.get", []).append(get)
        finally:
            server.stop()
    return [figure(name, "MiB/s", "higher", values) for name, values in samples.items()]
