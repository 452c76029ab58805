"""A real `nanio` S3 server (it checks SigV4 signatures) as a child process on 127.0.0.1: the S3
backend of the tests' store fixtures and of the object-store benchmark (veil_tools.bench)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

from veil_tools.localrun import free_port
from veil.store.config import StoreConfig

ACCESS_KEY = "veil-test-access"
SECRET_KEY = "veil-test-secret-0123456789"


class NanioServer:
    """A nanio process serving `data_dir` on a fixed port; can be stopped and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "NANIO_ACCESS_KEY": ACCESS_KEY, "NANIO_SECRET_KEY": SECRET_KEY}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "nanio", "serve", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--log-level", "warning", "--no-access-log"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"nanio exited with {self._process.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nanio did not listen on {self.endpoint} within {timeout} s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None

    def config(self, bucket: str | None = None, **overrides: object) -> StoreConfig:
        """Store config for this server; fast retries so failure tests stay short."""
        base = StoreConfig(backend="s3", bucket=bucket or f"test-{uuid.uuid4().hex[:12]}",
                           s3_endpoint=self.endpoint, s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY,
                           s3_secure=False, s3_retries=3, s3_backoff_seconds=0.05,
                           s3_backoff_max_seconds=0.2, s3_retry_deadline_seconds=5.0,
                           s3_timeout_seconds=10.0, s3_part_size_bytes=5 << 20,
                           s3_spool_memory_bytes=1 << 20)
        return replace(base, **overrides)  # type: ignore[arg-type]

    def object_file(self, bucket: str, key: str) -> Path:
        """Where nanio keeps the object's bytes (to corrupt them in tests)."""
        return self.data_dir / bucket / key
