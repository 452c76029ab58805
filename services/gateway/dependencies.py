"""The gateway's view of the anonymizer: a circuit breaker its calls pass, and a background
check that keeps the breaker and the gateway's readiness current.

A hung anonymizer (stopped, swapping, deadlocked) keeps its TCP connections open: without a
check, calls wait for their full deadline and the gateway keeps reporting SERVING. Every
VEIL_DEPENDENCY_CHECK_SECONDS the gateway asks the anonymizer's health with a short deadline:

- no answer or not SERVING: the breaker opens (calls fail at once with UNAVAILABLE) and the
  health of veil.v1.Gateway (the readiness probe's) turns NOT_SERVING, so load balancers send
  callers to replicas that can serve. Liveness (the overall "" entry) stays SERVING: restarting
  the gateway would not bring the anonymizer back.
- SERVING again: the breaker closes, readiness returns.

Between checks the breaker also opens on VEIL_ANONYMIZER_BREAKER_FAILURES consecutive calls
failing UNAVAILABLE or DEADLINE_EXCEEDED; after VEIL_ANONYMIZER_BREAKER_COOLDOWN_SECONDS it lets
one trial call through (half-open), whose outcome closes or reopens it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from veil.errors import Unavailable

log = logging.getLogger(__name__)

# Codes that say the dependency did not answer (rather than refused the request).
NO_ANSWER = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures (or `trip`) -> half-open after
    `cool_down` seconds: one trial call passes, its success closes, its failure reopens."""

    def __init__(self, name: str, failures: int, cool_down: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._threshold = failures
        self._cool_down = cool_down
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._reason = ""
        self._trial_running = False

    def admit(self) -> None:
        """Return when a call may go out; Unavailable at once while the circuit is open."""
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited >= self._cool_down and not self._trial_running:
            self._trial_running = True  # half-open: this call is the trial
            return
        raise Unavailable(f"{self.name} is unavailable ({self._reason}); failing fast, next "
                          f"attempt in {max(self._cool_down - waited, 0.0):.1f} s")

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("%s answers again: circuit closed", self.name)
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self, reason: str) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self._threshold:
            self.trip(reason)

    def trip(self, reason: str) -> None:
        if self._opened_at is None:
            log.warning("%s: circuit open (%s)", self.name, reason)
        self._opened_at = self._clock()
        self._reason = reason
        self._trial_running = False


SetReady = Callable[[bool], Awaitable[None]]


class DependencyMonitor:
    """Checks the health of `service` over `channel` every `interval` seconds; reports the
    outcome to `breaker` and, on a change, to `set_ready`."""

    def __init__(self, channel: grpc.aio.Channel, service: str, breaker: CircuitBreaker,
                 set_ready: SetReady, timeout: float) -> None:
        self._health = health_pb2_grpc.HealthStub(channel)
        self._service = service
        self._breaker = breaker
        self._set_ready = set_ready
        self._timeout = timeout
        self._ready: bool | None = None

    async def check(self) -> bool:
        """One check; True when the dependency answered SERVING."""
        try:
            response = await self._health.Check(health_pb2.HealthCheckRequest(service=self._service),
                                                timeout=self._timeout, wait_for_ready=False)
            serving = response.status == health_pb2.HealthCheckResponse.SERVING
            reason = "" if serving else f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
        except grpc.aio.AioRpcError as exc:
            serving = False
            reason = (f"no health answer within {self._timeout:g} s"
                      if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else f"health check {exc.code().name}")
        if serving:
            self._breaker.succeeded()
        else:
            self._breaker.trip(reason)
        if serving != self._ready:
            if not serving:
                log.warning("%s is not answering (%s): not ready", self._breaker.name, reason)
            await self._set_ready(serving)
            self._ready = serving
        return serving

    async def run_forever(self, interval: float) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval)
