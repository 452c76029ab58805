"""VeilServer in-process on loopback: health, reflection, the four arities through the
interceptors, error mapping, request ids, access logs, message limits, metrics, channel retries."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import urllib.request

import grpc
import pytest
from fixtures_store import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rpc_servicer import ACTION_KEY, CRASH_DETAIL, servicers, serving

from veil.errors import quoted
from veil.log import JsonFormatter
from veil.rpc import ChannelConfig, ServerConfig, VeilServer, open_channel
from veil.rpc.internal import InternalCallerInterceptor, presenting
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc, common_pb2, gateway_pb2, gateway_pb2_grpc

ANONYMIZER = "veil.v1.Anonymizer"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def channel(port: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def action(value: str) -> tuple[tuple[str, str], ...]:
    return ((ACTION_KEY, value),)


def test_health_transitions() -> None:
    async def scenario() -> None:
        async with serving(ready=False) as server, channel(server.port) as ch:
            health = health_pb2_grpc.HealthStub(ch)

            async def status(service: str) -> int:
                return (await health.Check(health_pb2.HealthCheckRequest(service=service))).status

            assert server.service_names == [ANONYMIZER, "veil.v1.Gateway"]
            assert [await status(s) for s in ("", ANONYMIZER, "veil.v1.Gateway")] == [NOT_SERVING] * 3
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await status("veil.v1.Nope")
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

            await server.set_serving(True)
            assert [await status(s) for s in ("", ANONYMIZER, "veil.v1.Gateway")] == [SERVING] * 3
            await server.set_serving(False, ANONYMIZER)
            assert [await status(s) for s in ("", ANONYMIZER)] == [SERVING, NOT_SERVING]
            await server.set_serving(True)

            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == SERVING
            stopping = asyncio.create_task(server.stop(grace=5))
            assert (await watch.read()).status == NOT_SERVING  # pushed as shutdown begins
            watch.cancel()
            await stopping
    run(scenario())


def test_reflection_lists_services() -> None:
    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            response = await call.read()
            names = {s.name for s in response.list_services_response.service}
            assert {ANONYMIZER, "veil.v1.Gateway", "grpc.health.v1.Health"} <= names
    run(scenario())


def test_all_four_arities_pass_through_the_interceptors() -> None:
    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
            gateway = gateway_pb2_grpc.GatewayStub(ch)
            info = await anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest())
            assert re.fullmatch(r"[0-9a-f]{32}", info.model_version)  # generated request id

            events = [e async for e in anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest())]
            assert [e.progress.step for e in events] == [0, 1, 2]

            async def parts():
                for size in (5, 7):
                    yield anonymizer_pb2.AnonymizeUploadRequest(chunk=common_pb2.Chunk(data=b"x" * size))
            echoed = [e.progress.step async for e in anonymizer.AnonymizeUpload(parts())]
            assert echoed == [5, 7]

            async def chunks():
                for size in (3, 4, 5):
                    yield gateway_pb2.UploadImageRequest(chunk=common_pb2.Chunk(data=b"y" * size))
            ref = await gateway.UploadImage(chunks())
            assert ref.object.size == 12
    run(scenario())


@pytest.mark.parametrize(("error", "code"), [
    ("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
    ("NotFound", grpc.StatusCode.NOT_FOUND),
    ("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS),
    ("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION),
    ("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED),
    ("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
    ("ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("Unavailable", grpc.StatusCode.UNAVAILABLE),
    ("DataLoss", grpc.StatusCode.DATA_LOSS),
    ("Aborted", grpc.StatusCode.ABORTED),
    ("ConfigError", grpc.StatusCode.INTERNAL),
    ("VeilError", grpc.StatusCode.INTERNAL),
])
def test_domain_errors_map_to_status_codes(error: str, code: grpc.StatusCode) -> None:
    message = f"{error} raised by the test servicer"

    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
            gateway = gateway_pb2_grpc.GatewayStub(ch)
            calls = {
                "unary": anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=action(f"raise:{error}")),
                "client_stream": gateway.UploadImage(iter([]), metadata=action(f"raise:{error}")),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await call
                assert (failure.value.code(), failure.value.details()) == (code, message), name
            stream = anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest(), metadata=action(f"midstream:{error}"))
            first = await stream.read()
            assert first.progress.step == 0
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stream.read()
            assert (failure.value.code(), failure.value.details()) == (code, message)
            # The service keeps serving.
            assert (await anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest())).model_version
    run(scenario())


def test_unexpected_errors_are_internal_without_details_and_unimplemented_stays_unimplemented() -> None:
    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
            call = anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(),
                                           metadata=(("x-request-id", "crash-1"), (ACTION_KEY, "crash")))
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call
            assert failure.value.code() == grpc.StatusCode.INTERNAL
            assert CRASH_DETAIL not in failure.value.details()
            assert failure.value.details() == "internal error (request id crash-1)"

            with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
                await gateway_pb2_grpc.GatewayStub(ch).GetSession(gateway_pb2.GetSessionRequest())
            assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "/veil.v1.Gateway/GetSession is not implemented" in unimplemented.value.details()
            assert (await anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest())).model_version
    run(scenario())


def test_request_id_round_trip_and_access_log() -> None:
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(JsonFormatter())
    rpc_log = logging.getLogger("veil.rpc")
    rpc_log.addHandler(handler)
    rpc_log.setLevel(logging.INFO)

    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
            call = anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=(("x-request-id", "req-42"),))
            info = await call
            assert info.model_version == "req-42"  # the servicer sees it through veil.rpc.request_id()
            assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata())

            stream = anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest(), metadata=(("x-request-id", "req-43"),))
            assert {e.progress.message async for e in stream} == {"req-43"}
            assert ("x-request-id", "req-43") in tuple(await stream.trailing_metadata())

            failing = anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(),
                                              metadata=(("x-request-id", "req-44"), (ACTION_KEY, "raise:NotFound")))
            with pytest.raises(grpc.aio.AioRpcError):
                await failing
            assert ("x-request-id", "req-44") in tuple(await failing.trailing_metadata())

            bad = anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=(("x-request-id", "bad id!"),))
            replaced = (await bad).model_version
            assert re.fullmatch(r"[0-9a-f]{32}", replaced)
            assert ("x-request-id", replaced) in tuple(await bad.trailing_metadata())
    try:
        run(scenario())
    finally:
        rpc_log.removeHandler(handler)
    lines = [json.loads(line) for line in records.getvalue().splitlines()]
    rpc_lines = {line["request_id"]: line for line in lines if line.get("event") == "rpc"}
    ok = rpc_lines["req-42"]
    assert (ok["method"], ok["code"], ok["grpc_type"], ok["level"]) == (
        "/veil.v1.Anonymizer/GetModelInfo", "OK", "unary", "info")
    assert ok["peer"].startswith("ipv4:127.0.0.1:") and 0 <= ok["duration_s"] < 10
    assert (rpc_lines["req-43"]["code"], rpc_lines["req-43"]["grpc_type"]) == ("OK", "server_stream")
    assert rpc_lines["req-44"]["code"] == "NOT_FOUND"
    assert all(set(line) <= {"ts", "level", "logger", "msg", "request_id", "event", "method", "grpc_type",
                             "code", "duration_s", "peer"} for line in rpc_lines.values())


def test_message_size_limit() -> None:
    async def scenario() -> None:
        async with serving(max_message_bytes=64 * 1024) as server, channel(server.port) as ch:
            gateway = gateway_pb2_grpc.GatewayStub(ch)

            def upload(size: int):
                return gateway.UploadImage(iter([gateway_pb2.UploadImageRequest(chunk=common_pb2.Chunk(data=b"z" * size))]))
            assert (await upload(60 * 1024)).object.size == 60 * 1024
            with pytest.raises(grpc.aio.AioRpcError) as too_big:
                await upload(70 * 1024)
            assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    run(scenario())


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_endpoint() -> None:
    port = free_port()

    async def scenario() -> tuple[str, str]:
        async with serving(metrics_port=port, metrics_host="127.0.0.1") as server, channel(server.port) as ch:
            assert server.metrics_port == port
            before = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
            for _ in range(3):
                await anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest())
            with pytest.raises(grpc.aio.AioRpcError):
                await anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=action("raise:NotFound"))
            _ = [e async for e in anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest())]
            after = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
            return before, after

    before, after = run(scenario())
    unary = {"grpc_service": ANONYMIZER, "grpc_method": "GetModelInfo", "grpc_type": "unary"}

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("veil_grpc_server_started_total", **unary) == 4
    assert delta("veil_grpc_server_handled_total", **unary, grpc_code="OK") == 3
    assert delta("veil_grpc_server_handled_total", **unary, grpc_code="NOT_FOUND") == 1
    assert delta("veil_grpc_server_handling_seconds_count", **unary, grpc_code="OK") == 3
    assert delta("veil_grpc_server_handling_seconds_bucket", **unary, grpc_code="OK", le="+Inf") == 3
    assert delta("veil_grpc_server_handled_total", grpc_service=ANONYMIZER, grpc_method="Anonymize",
                 grpc_type="server_stream", grpc_code="OK") == 1
    assert re.search(r"^veil_gpu_available [01]\.0$", after, re.M)
    # No user-controlled values as labels: request ids never appear.
    assert "x-request-id" not in after


def test_channel_retries_unavailable() -> None:
    async def scenario() -> None:
        async with serving() as server:
            target = f"127.0.0.1:{server.port}"
            fast = dict(retry_initial_backoff_seconds=0.01, retry_max_backoff_seconds=0.05)
            async with open_channel(target, ChannelConfig(retry_max_attempts=4, **fast)) as ch:
                info = await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(
                    anonymizer_pb2.GetModelInfoRequest(), metadata=action("fail:2:a"))
                assert info.max_candidates == 3  # two failed attempts, then success
            async with open_channel(target, ChannelConfig(retry_max_attempts=2, **fast)) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(
                        anonymizer_pb2.GetModelInfoRequest(), metadata=action("fail:5:b"))
                assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
                assert failure.value.details() == "attempt 2 of b fails"
    run(scenario())



def raw_call(ch: grpc.aio.Channel, method: str, kind: str, payload: bytes):
    """`method` called with `payload` as the request bytes (identity serializers)."""
    identity = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    if kind == "unary":
        return ch.unary_unary(method, **identity)(payload)
    if kind == "client_stream":
        return ch.stream_unary(method, **identity)(iter([payload]))
    return ch.stream_stream(method, **identity)(iter([payload]))


UNDECODABLE = b"\xff\xff\xff\xff"  # field 31, wire type 7: no protobuf message parses this


@pytest.mark.parametrize(("method", "kind"), [
    ("/veil.v1.Anonymizer/GetModelInfo", "unary"),
    ("/veil.v1.Gateway/UploadImage", "client_stream"),
    ("/veil.v1.Anonymizer/AnonymizeUpload", "bidi_stream"),
])
def test_undecodable_requests_are_invalid_argument_counted_and_logged_once_without_traceback(
        method: str, kind: str) -> None:
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("veil.rpc", "grpc")]
    for logger in loggers:
        logger.addHandler(handler)
    port = free_port()
    service, name = method.lstrip("/").split("/")
    labels = {"grpc_service": service, "grpc_method": name, "grpc_type": kind}

    async def scenario() -> tuple[str, str]:
        async with serving(metrics_port=port, metrics_host="127.0.0.1") as server, channel(server.port) as ch:
            scrape = f"http://127.0.0.1:{port}/metrics"
            before = await asyncio.to_thread(lambda: urllib.request.urlopen(scrape, timeout=10).read().decode())
            call = raw_call(ch, method, kind, UNDECODABLE)
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                if kind == "bidi_stream":
                    _ = [m async for m in call]
                else:
                    await call
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert failure.value.details().startswith(f"undecodable {name} request")
            after = await asyncio.to_thread(lambda: urllib.request.urlopen(scrape, timeout=10).read().decode())
            # The server keeps serving.
            assert (await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(
                anonymizer_pb2.GetModelInfoRequest())).model_version
            return before, after
    try:
        before, after = run(scenario())
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    counted = (metric_value(after, "veil_grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT")
               - metric_value(before, "veil_grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT"))
    assert counted == 1
    lines = [json.loads(line) for line in records.getvalue().splitlines()]
    assert [line["level"] for line in lines if line["level"] in ("warning", "error", "critical")] == ["warning"]
    assert "Traceback" not in records.getvalue()


def test_status_messages_are_bounded_whatever_a_servicer_echoes() -> None:
    async def scenario() -> None:
        async with serving() as server, channel(server.port) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(
                    anonymizer_pb2.GetModelInfoRequest(), metadata=action("echo:65536"))
            # Not RESOURCE_EXHAUSTED about the trailing metadata's size: the caller's error, cut short.
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert failure.value.details().startswith("cannot use aaaa")
            assert failure.value.details().endswith("(message cut at 1000 of 65547 characters)")
            assert len(failure.value.details()) < 1100
    run(scenario())


def test_quoted_keeps_a_short_prefix() -> None:
    assert quoted("cap-x") == "'cap-x'"
    assert quoted("a" * 65536) == "'" + "a" * 100 + "'... (65536 characters)"
    assert quoted(b"\x00" * 100, limit=4) == "b'\\x00\\x00\\x00\\x00'... (100 bytes)"
    assert quoted(None) == "None"


def test_tenant_header_honoured_only_with_the_internal_secret_on_all_four_arities() -> None:
    secret = "s3cret-" * 6
    tenant = (("x-veil-tenant", "dev"),)

    async def outcomes(ch: grpc.aio.Channel) -> list[grpc.StatusCode]:
        anonymizer = anonymizer_pb2_grpc.AnonymizerStub(ch)
        gateway = gateway_pb2_grpc.GatewayStub(ch)
        calls = [lambda: anonymizer.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=tenant),
                 lambda: gateway.UploadImage(iter([]), metadata=tenant)]
        streams = [lambda: anonymizer.Anonymize(anonymizer_pb2.AnonymizeRequest(), metadata=tenant),
                   lambda: anonymizer.AnonymizeUpload(iter([]), metadata=tenant)]
        codes = []
        for make in [*calls, *streams]:
            try:
                call = make()
                if hasattr(call, "__aiter__"):
                    _ = [m async for m in call]
                else:
                    await call
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
        return codes

    async def scenario() -> None:
        server = VeilServer(ServerConfig(grpc_address="127.0.0.1:0", metrics_port=0), servicers(),
                            interceptors=[InternalCallerInterceptor(secret)])
        await server.start()
        try:
            target = f"127.0.0.1:{server.port}"
            async with open_channel(target) as ch:
                assert await outcomes(ch) == [grpc.StatusCode.UNAUTHENTICATED] * 4
                # Without a tenant the call acts for no one and passes.
                assert (await anonymizer_pb2_grpc.AnonymizerStub(ch).GetModelInfo(
                    anonymizer_pb2.GetModelInfoRequest())).model_version
            async with open_channel(target, interceptors=presenting("wrong-" * 8)) as ch:
                assert await outcomes(ch) == [grpc.StatusCode.UNAUTHENTICATED] * 4
            async with open_channel(target, interceptors=presenting(secret)) as ch:
                assert await outcomes(ch) == [grpc.StatusCode.OK] * 4
        finally:
            await server.stop(0)
    run(scenario())
