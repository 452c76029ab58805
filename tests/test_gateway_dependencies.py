"""A hung anonymizer (SIGSTOP) is noticed within seconds: the gateway's readiness (health of
veil.v1.Gateway) turns NOT_SERVING while its liveness ("") stays SERVING, calls that need the
anonymizer fail fast with UNAVAILABLE (circuit open), and all recovers after SIGCONT."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fixtures_services import (ServiceFactory, ServiceProcess, failure, gateway_base_env, gateway_factory_of,
                               start_anonymizer, wait_for)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.dependencies import CircuitBreaker
from veil.errors import Unavailable

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHECK_SECONDS = 0.3


@pytest.fixture
def own_anonymizer(tiny_model_dir: Path, services_store, services_logs: Path,
                   tmp_path: Path) -> Iterator[ServiceProcess]:
    """An anonymizer of the test's own (it is stopped and continued). Its edits are unverified, as
    in the shared one: a refused candidate would be a right answer that this test cannot tell
    from a wrong one."""
    service = start_anonymizer(tiny_model_dir, services_store, services_logs / "own-anonymizer.log",
                               tmp_path / "model-cache", sampling_steps=2)
    yield service
    service.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    service.stop()


@pytest.fixture
def guarded_gateway(own_anonymizer, services_store, gateway_db_url, tokens_file,
                    services_logs) -> Iterator[ServiceProcess]:
    factory: ServiceFactory = gateway_factory_of(
        gateway_base_env(own_anonymizer, services_store, gateway_db_url, tokens_file),
        services_logs / "guarded")
    yield factory(VEIL_DEPENDENCY_CHECK_SECONDS=str(CHECK_SECONDS),
                  VEIL_DEPENDENCY_CHECK_TIMEOUT_SECONDS="0.5",
                  VEIL_ANONYMIZER_BREAKER_COOLDOWN_SECONDS="1")
    factory.stop_all()


def health(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2).status


def stop_and_continue(anonymizer: ServiceProcess, gateway: ServiceProcess, tenant: str,
                      image) -> None:
    anonymizer.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    stopped = time.monotonic()
    try:
        wait_for(lambda: health(gateway.target, "veil.v1.Gateway") == NOT_SERVING, 5,
                 "the gateway's readiness to turn NOT_SERVING")
        assert time.monotonic() - stopped < 5
        assert health(gateway.target, "") == SERVING  # liveness: no restart for a dependency
        with gateway.client(tenant) as client:
            started = time.monotonic()
            refused = failure(client.create_session, "dana", image, protect=["Male"], candidates=1)
            assert refused.code() == grpc.StatusCode.UNAVAILABLE
            assert "anonymizer" in refused.details()
            assert time.monotonic() - started < 3
    finally:
        anonymizer.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    wait_for(lambda: health(gateway.target, "veil.v1.Gateway") == SERVING, 10,
             "the gateway's readiness to return")
    with gateway.client(tenant) as client:
        session = client.create_session("dana", image, protect=["Male"], candidates=1)
        assert len(session.latest_round.candidates) == 1


@pytest.mark.parametrize("cycles", [1, pytest.param(5, marks=pytest.mark.soak)])
def test_a_hung_anonymizer_is_noticed_within_seconds_and_recovers(
        own_anonymizer, guarded_gateway, new_tenant, face_png, cycles: int) -> None:
    tenant = new_tenant()
    assert health(guarded_gateway.target, "veil.v1.Gateway") == SERVING
    with guarded_gateway.client(tenant) as client:
        image = client.upload_image(face_png[0], subject_id="dana")
    for _ in range(cycles):
        stop_and_continue(own_anonymizer, guarded_gateway, tenant, image)


def test_breaker_opens_after_failures_fails_fast_and_half_opens_after_the_cool_down() -> None:
    now = [0.0]
    breaker = CircuitBreaker("anonymizer", failures=2, cool_down=10.0, clock=lambda: now[0])
    breaker.admit()
    breaker.failed("UNAVAILABLE")
    breaker.admit()  # one failure is not yet an outage
    breaker.failed("UNAVAILABLE")
    with pytest.raises(Unavailable, match=r"anonymizer is unavailable \(UNAVAILABLE\); failing fast, next attempt in 10.0 s"):
        breaker.admit()
    now[0] = 10.0
    breaker.admit()  # the trial call
    with pytest.raises(Unavailable):
        breaker.admit()  # others still fail fast while it runs
    breaker.failed("DEADLINE_EXCEEDED")  # a failed trial reopens at once
    with pytest.raises(Unavailable, match="next attempt in 10.0 s"):
        breaker.admit()
    now[0] = 20.0
    breaker.admit()
    breaker.succeeded()
    for _ in range(3):
        breaker.admit()  # closed: every call passes
