"""A service as a real process: SIGTERM drains in-flight calls; a bad config exits with a message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fixtures_store import free_port
from rpc_servicer import ACTION_KEY

from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc

SERVER_SCRIPT = Path(__file__).with_name("rpc_servicer.py")


class ServerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, str(SERVER_SCRIPT)], env={**os.environ, **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY"):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.port = int(line.split()[1])

    def finish(self, timeout: float) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr


@pytest.fixture
def server_process() -> Iterator[callable]:
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        started.append(ServerProcess(env))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def slow_call(port: int, seconds: float, request_id: str):
    async def call():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = anonymizer_pb2_grpc.AnonymizerStub(ch)
            events = stub.Anonymize(anonymizer_pb2.AnonymizeRequest(),
                                    metadata=((ACTION_KEY, f"sleep:{seconds}"), ("x-request-id", request_id)))
            return [e.progress.step async for e in events]
    return call()


async def quick_call(port: int) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(server_process) -> None:
    server = server_process(VEIL_SHUTDOWN_GRACE_SECONDS="20")

    async def scenario() -> tuple[list[int], grpc.StatusCode, float]:
        in_flight = asyncio.create_task(slow_call(server.port, 2.0, "drained"))
        assert await quick_call(server.port) == grpc.StatusCode.OK
        await asyncio.sleep(0.5)  # the slow call is running
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        refused = await quick_call(server.port)
        steps = await in_flight
        return steps, refused, time.monotonic() - sigterm_at

    steps, refused, drained_after = asyncio.run(scenario())
    assert steps == [0, 1, 2]  # the in-flight stream completed every message
    assert refused == grpc.StatusCode.UNAVAILABLE
    returncode, stderr = server.finish(timeout=20)
    assert returncode == 0, stderr
    assert drained_after < 10  # it waited for the call, not for the whole grace period
    assert "received SIGTERM: shutting down gracefully" in stderr
    assert '"request_id": "drained"' in stderr and '"code": "OK"' in stderr


def test_grace_period_bounds_the_drain(server_process) -> None:
    server = server_process(VEIL_SHUTDOWN_GRACE_SECONDS="1")

    async def scenario() -> grpc.StatusCode:
        in_flight = asyncio.create_task(slow_call(server.port, 30.0, "too-slow"))
        await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        try:
            await in_flight
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    start = time.monotonic()
    code = asyncio.run(scenario())
    returncode, stderr = server.finish(timeout=20)
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert returncode == 0, stderr
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(("env", "message"), [
    ({"VEIL_MAX_MESSAGE_BYTES": "abc"}, "VEIL_MAX_MESSAGE_BYTES='abc': expected an integer"),
    ({"VEIL_MAX_MESSAGE_BYTES": "10"}, "VEIL_MAX_MESSAGE_BYTES='10': must be >= 1024"),
    ({"VEIL_GRPC_ADDRESS": "localhost"}, "VEIL_GRPC_ADDRESS='localhost': expected host:port"),
    ({"VEIL_GRPC_ADDRESS": "::1:50051"}, "put an IPv6 host in brackets"),
    ({"VEIL_GRPC_ADDRESS": "127.0.0.1:70000"}, "port must be a number in 0..65535"),
    ({"VEIL_SHUTDOWN_GRACE_SECONDS": "nan"}, "expected a finite number"),
    ({"VEIL_LOG_LEVEL": "loud"}, "must be one of debug, info, warning, error"),
    ({"VEIL_TLS_CERT_FILE": "/nonexistent/cert.pem"}, "must be set together"),
    ({"VEIL_TLS_CERT_FILE": "/nonexistent/cert.pem", "VEIL_TLS_KEY_FILE": "/nonexistent/key.pem"},
     "VEIL_TLS_CERT_FILE='/nonexistent/cert.pem': not a readable file"),
])
def test_bad_config_exits_with_a_clear_message(env: dict[str, str], message: str) -> None:
    result = subprocess.run([sys.executable, str(SERVER_SCRIPT)], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("test-server: configuration error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert "READY" not in result.stdout


def test_port_in_use_exits_with_a_clear_message(server_process) -> None:
    first = server_process()
    result = subprocess.run([sys.executable, str(SERVER_SCRIPT)],
                            env={**os.environ, "VEIL_GRPC_ADDRESS": f"127.0.0.1:{first.port}"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"VEIL_GRPC_ADDRESS='127.0.0.1:{first.port}': cannot listen" in result.stderr
    metrics_port = free_port()
    second = server_process(VEIL_METRICS_PORT=str(metrics_port), VEIL_METRICS_HOST="127.0.0.1")
    assert second.port != first.port
    result = subprocess.run([sys.executable, str(SERVER_SCRIPT)],
                            env={**os.environ, "VEIL_METRICS_PORT": str(metrics_port), "VEIL_METRICS_HOST": "127.0.0.1"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"VEIL_METRICS_PORT={metrics_port}: cannot listen" in result.stderr


def test_streams_cancelled_in_flight_leave_the_server_serving(server_process) -> None:
    """A client that cancels server streams mid-way, again and again: the interceptors must not
    touch a call grpc has already destroyed (the access log's context.peer() at the end of a
    cancelled call crashed the process, a null-pointer dereference in grpc's core, within 10 to 30
    cancels)."""
    server = server_process()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        anonymizer = anonymizer_pb2_grpc.AnonymizerStub(channel)
        for i in range(80):
            stream = anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest(), metadata=((ACTION_KEY, "sleep:0.03"),),
                                          timeout=10)
            for _ in range(1 + i % 2):
                next(stream)
            stream.cancel()
            assert server.process.poll() is None, f"the server died after {i + 1} cancelled streams"
        assert anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), timeout=10) is not None
