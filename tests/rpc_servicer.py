"""TEST-ONLY servicers of real veil.v1 services, to exercise the scaffolding (veil.rpc) on all four
RPC arities. They implement no product feature. Behaviour is steered by `x-test-action` metadata:

    sleep:<seconds>      wait before answering (or between streamed messages)
    raise:<ErrorName>    raise veil.errors.<ErrorName>("<ErrorName> raised by the test servicer")
    midstream:<ErrorName> (Anonymize) the same, after the first streamed message
    crash                raise RuntimeError with a detail that must not reach the client
    fail:<n>:<key>       fail with Unavailable the first n calls that carry <key>
    echo:<n>             raise InvalidArgument echoing n characters unquoted (an unbounded message)

Run as a script it serves them with ServerConfig from the environment and prints
"READY <port> <metrics_port>" once serving (used by the subprocess tests).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from veil import errors  # noqa: E402
from veil.log import setup_logging  # noqa: E402
from veil.rpc import ServerConfig, VeilServer, request_id, run_service  # noqa: E402
from veil.rpc.context import metadata_value  # noqa: E402
from veil.v1 import (anonymizer_pb2, anonymizer_pb2_grpc, common_pb2, gateway_pb2_grpc)  # noqa: E402

CRASH_DETAIL = "secret internal detail 42"
ACTION_KEY = "x-test-action"


class TestOnlyAnonymizer(anonymizer_pb2_grpc.AnonymizerServicer):
    def __init__(self) -> None:
        self.failures: collections.Counter[str] = collections.Counter()

    @staticmethod
    def _action(context: grpc.aio.ServicerContext) -> tuple[str, str]:
        kind, _, arg = (metadata_value(context.invocation_metadata(), ACTION_KEY) or "").partition(":")
        return kind, arg

    async def _act(self, context: grpc.aio.ServicerContext) -> float:
        """Apply the action at the start of a call; returns the requested sleep."""
        kind, arg = self._action(context)
        if kind == "raise":
            raise getattr(errors, arg)(f"{arg} raised by the test servicer")
        if kind == "echo":
            raise errors.InvalidArgument(f"cannot use {'a' * int(arg)}")
        if kind == "crash":
            raise RuntimeError(CRASH_DETAIL)
        if kind == "fail":
            count, _, key = arg.partition(":")
            self.failures[key] += 1
            if self.failures[key] <= int(count):
                raise errors.Unavailable(f"attempt {self.failures[key]} of {key} fails")
        return float(arg) if kind == "sleep" else 0.0

    async def GetModelInfo(self, request, context):
        delay = await self._act(context)
        await asyncio.sleep(delay)
        auth = context.auth_context().get("x509_common_name", [b""])
        return anonymizer_pb2.ModelInfo(model_version=request_id() or "", device=auth[0].decode(),
                                        max_candidates=self.failures.total())

    async def Anonymize(self, request, context):
        delay = await self._act(context)
        kind, arg = self._action(context)
        for step in range(3):
            if step == 1 and kind == "midstream":
                raise getattr(errors, arg)(f"{arg} raised by the test servicer")
            yield anonymizer_pb2.AnonymizeEvent(progress=common_pb2.Progress(
                stage="decode", step=step, total_steps=3, message=request_id() or ""))
            await asyncio.sleep(delay / 3)

    async def AnonymizeUpload(self, request_iterator, context):
        await self._act(context)
        async for part in request_iterator:
            size = len(part.chunk.data)
            yield anonymizer_pb2.AnonymizeEvent(progress=common_pb2.Progress(stage="received", step=size))


class TestOnlyGateway(gateway_pb2_grpc.GatewayServicer):
    """Only UploadImage (client streaming); every other method stays UNIMPLEMENTED."""

    async def UploadImage(self, request_iterator, context):
        await TestOnlyAnonymizer()._act(context)
        total = 0
        async for part in request_iterator:
            total += len(part.chunk.data)
        return common_pb2.ImageRef(object=common_pb2.ObjectRef(key="upload", size=total))


def servicers() -> list:
    return [(anonymizer_pb2_grpc.add_AnonymizerServicer_to_server, TestOnlyAnonymizer()),
            (gateway_pb2_grpc.add_GatewayServicer_to_server, TestOnlyGateway())]


@contextlib.asynccontextmanager
async def serving(ready: bool = True, **config: object) -> AsyncIterator[VeilServer]:
    """An in-process VeilServer with the test-only servicers on a free loopback port."""
    server = VeilServer(ServerConfig(**{"grpc_address": "127.0.0.1:0", "metrics_port": 0, **config}), servicers())
    await server.start()
    if ready:
        await server.set_serving(True)
    try:
        yield server
    finally:
        await server.stop(0)


async def main() -> None:
    config = ServerConfig.load(grpc_address="127.0.0.1:0", metrics_port=0)
    setup_logging(config.log_level)
    server = VeilServer(config, servicers())
    await server.start()
    await server.set_serving(True)
    print(f"READY {server.port} {server.metrics_port or 0}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(run_service(main, name="test-server"))
