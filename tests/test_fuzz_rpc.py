"""A bounded fuzzer over every RPC of the three services (issue 13's acceptance).

Requests are built from the services' descriptors, field by field, with hostile values (NaN, inf,
+-huge numbers, the ends of every integer range, unknown enum values, empty, long, traversing and
control-character strings, random bytes, nested messages, repeated and map fields), seeded so a
failure replays. Each is sent to real servers on loopback as an authenticated caller. The servers
must answer every one with a status a client can act on (never UNKNOWN or INTERNAL: those mean a
server fault), stay SERVING, and answer a real call after.

The default run sends FUZZ_REQUESTS requests in all; `make soak` (marker `soak`) sends
SOAK_REQUESTS with other seeds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import grpc
import pytest
from fixtures_db import migrated
from fixtures_services import TOKENS, ServiceProcess, unlearner_factory_of
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc

from veil.v1 import anonymizer_pb2, gateway_pb2, unlearner_pb2

FUZZ_REQUESTS = 200
SOAK_REQUESTS = 3000
CALL_TIMEOUT_SECONDS = 10.0
SERVER_FAULTS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
TENANT = "tenant-39"

Int = FieldDescriptor
INTEGER_RANGES = {
    Int.TYPE_INT32: (-2**31, 2**31 - 1), Int.TYPE_SINT32: (-2**31, 2**31 - 1), Int.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    Int.TYPE_INT64: (-2**63, 2**63 - 1), Int.TYPE_SINT64: (-2**63, 2**63 - 1), Int.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    Int.TYPE_UINT32: (0, 2**32 - 1), Int.TYPE_FIXED32: (0, 2**32 - 1),
    Int.TYPE_UINT64: (0, 2**64 - 1), Int.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e12, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 64.0,
          64.000001, 16.0)
FLOAT32S = (0.0, -1.0, 0.5, 3.4e38, float("nan"), float("inf"), float("-inf"))
STRINGS = ("", "x", "Male", "identity", "../../etc/passwd", "tenants/tenant-0/secret.png", "a/b/c.png", "/abs",
           "model", "v1", "cg", "lissa", "image/png", "image/jpeg", "\x00\x01", "é" * 3, " padded ", "0" * 64,
           "f" * 64, "00000000-0000-0000-0000-000000000000", "sessions/x/rounds/1", "CAP-x")


class Fuzzer:
    """Random messages of a descriptor: each field set with probability 1/2, to a hostile value."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def message(self, cls: type[Message], depth: int = 0) -> Message:
        message = cls()
        for field in message.DESCRIPTOR.fields:
            if self.random.random() < 0.5:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                entry = GetMessageClass(field.message_type)
                target = getattr(message, field.name)
                for _ in range(self.random.randint(0, 3)):
                    key, value = self.scalar(entry.DESCRIPTOR.fields_by_name["key"]), None
                    value_field = entry.DESCRIPTOR.fields_by_name["value"]
                    if value_field.message_type is None:
                        value = self.scalar(value_field)
                        target[key] = value
                    else:
                        target[key].CopyFrom(self.message(GetMessageClass(value_field.message_type), depth + 1))
            elif field.is_repeated:
                count = self.random.choice((0, 1, 2, 3, 17))
                target = getattr(message, field.name)
                for _ in range(count):
                    if field.message_type is not None:
                        if depth < 3:
                            target.add().CopyFrom(self.message(GetMessageClass(field.message_type), depth + 1))
                    else:
                        target.append(self.scalar(field))
            elif field.message_type is not None:
                if depth < 3:
                    getattr(message, field.name).CopyFrom(
                        self.message(GetMessageClass(field.message_type), depth + 1))
            else:
                setattr(message, field.name, self.scalar(field))
        return message

    def scalar(self, field: FieldDescriptor) -> object:
        pick = self.random
        if field.type in INTEGER_RANGES:
            low, high = INTEGER_RANGES[field.type]
            return pick.choice((0, 1, -1 if low < 0 else 2, 8, 9, 11, 1000, 2**31 - 1 if high > 2**31 else 7,
                                low, high, pick.randint(low, high)))
        if field.type == FieldDescriptor.TYPE_DOUBLE:
            return pick.choice(FLOATS + (pick.uniform(-100, 100),))
        if field.type == FieldDescriptor.TYPE_FLOAT:
            return pick.choice(FLOAT32S)
        if field.type == FieldDescriptor.TYPE_BOOL:
            return pick.random() < 0.5
        if field.type == FieldDescriptor.TYPE_ENUM:
            values = [v.number for v in field.enum_type.values]
            return pick.choice(values + [max(values) + 1, 99, -1])
        if field.type == FieldDescriptor.TYPE_STRING:
            return pick.choice(STRINGS + ("z" * pick.choice((255, 257, 5000)),))
        if field.type == FieldDescriptor.TYPE_BYTES:
            return pick.randbytes(pick.choice((0, 1, 16, 1024)))
        raise AssertionError(f"no fuzz values for field type {field.type} ({field.full_name})")

    def requests(self, method: MethodDescriptor) -> Iterator[Message] | Message:
        cls = GetMessageClass(method.input_type)
        if method.client_streaming:
            return iter([self.message(cls) for _ in range(self.random.randint(0, 4))])
        return self.message(cls)


def call(channel: grpc.Channel, method: MethodDescriptor, request: object, metadata: tuple) -> grpc.StatusCode:
    """Send `request` to `method` and read its whole answer; the status it ended with."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    serialize = GetMessageClass(method.input_type).SerializeToString
    deserialize = GetMessageClass(method.output_type).FromString
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    callable_ = kind[(method.client_streaming, method.server_streaming)](
        path, request_serializer=serialize, response_deserializer=deserialize)
    try:
        answer = callable_(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)
        if method.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def serving(service: ServiceProcess) -> bool:
    with grpc.insecure_channel(service.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service.health_service), timeout=5).status
    return status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def fuzz_unlearner(services_store, make_pg_database, services_logs) -> Iterator[ServiceProcess]:
    factory = unlearner_factory_of(services_store, migrated(make_pg_database(), "unlearner"),
                                   services_logs / "unlearner-fuzz")
    yield factory()
    factory.stop_all()


@pytest.fixture(scope="module")
def targets(anonymizer_service, gateway, fuzz_unlearner) -> list[tuple[ServiceProcess, object, tuple]]:
    """Each service with its descriptor and the metadata of an authenticated caller."""
    internal = (("x-veil-tenant", TENANT),)
    return [(anonymizer_service, anonymizer_pb2.DESCRIPTOR.services_by_name["Anonymizer"], internal),
            (fuzz_unlearner, unlearner_pb2.DESCRIPTOR.services_by_name["Unlearner"], internal),
            (gateway, gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
             (("authorization", f"Bearer {TOKENS[TENANT]}"),))]


def fuzz(targets: list, total: int, seed: int) -> None:
    fuzzer = Fuzzer(seed)
    methods = [(service, method, metadata) for service, descriptor, metadata in targets
               for method in descriptor.methods]
    faults: list[str] = []
    codes: dict[str, int] = {}
    channels = {service.target: grpc.insecure_channel(service.target) for service, _, _ in targets}
    try:
        for index in range(total):
            service, method, metadata = methods[index % len(methods)]
            request = fuzzer.requests(method)
            shown = "stream" if method.client_streaming else repr(request)[:300]
            code = call(channels[service.target], method, request, metadata)
            codes[code.name] = codes.get(code.name, 0) + 1
            if code in SERVER_FAULTS:
                faults.append(f"{method.full_name} #{index} (seed {seed}): {code.name} for {shown}")
    finally:
        for channel in channels.values():
            channel.close()
    assert not faults, "\n".join(faults[:20])
    for service, _, _ in targets:
        assert service.running and serving(service), f"{service.name} stopped serving"
    assert codes.get("INVALID_ARGUMENT", 0) > total // 10, codes  # the fuzzer does reach the checks


def test_every_rpc_answers_hostile_requests_with_a_client_status_and_keeps_serving(targets) -> None:
    started = time.monotonic()
    fuzz(targets, FUZZ_REQUESTS, seed=13)
    assert time.monotonic() - started < 60
    # A real call still works after the fuzzing.
    service, _, metadata = targets[0]
    with grpc.insecure_channel(service.target) as channel:
        info = channel.unary_unary("/veil.v1.Anonymizer/GetModelInfo",
                                   request_serializer=anonymizer_pb2.GetModelInfoRequest.SerializeToString,
                                   response_deserializer=anonymizer_pb2.ModelInfo.FromString)(
            anonymizer_pb2.GetModelInfoRequest(), timeout=10, metadata=metadata)
    assert info.max_candidates == 8


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_soak_fuzz_every_rpc(targets, seed: int) -> None:
    fuzz(targets, SOAK_REQUESTS, seed=seed)
