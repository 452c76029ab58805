"""Load, modest numbers: 32 sessions at once through one gateway (upload, first round, one round
of feedback, accept) all finish without errors; prints the gateway's overhead per round."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from veil_tools.bench.gateway import distinct_faces
from veil.data import load_celeba

SESSIONS = 32


def test_32_concurrent_sessions_finish_without_errors(gateway, new_tenant, tiny_faces):
    tenant = new_tenant()
    faces = distinct_faces(load_celeba(tiny_faces, size=16, limit=8).images, SESSIONS)
    before = gateway.metrics()

    def one_session(i: int) -> tuple[float, int]:
        started = time.perf_counter()
        with gateway.client(tenant) as client:
            image = client.upload_image(faces[i])
            session = client.create_session(f"load-{i}", image, protect=["Male"], level=5,
                                            candidates=1)
            client.feedback(session.session_id, "less")
            accepted = client.feedback(session.session_id, "accept", candidate=0)
        return time.perf_counter() - started, accepted.session.round_count

    started = time.perf_counter()
    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(one_session, range(SESSIONS)))
    wall = time.perf_counter() - started
    assert [rounds for _, rounds in results] == [2] * SESSIONS
    with gateway.client(tenant) as client:
        assert sum(1 for _ in client.list_sessions()) == SESSIONS
        assert all(len(client.ledger(f"load-{i}").entries) == 1 for i in range(SESSIONS))

    after = gateway.metrics()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    rounds = delta("veil_gateway_round_seconds_count")
    calls = delta("veil_gateway_anonymizer_call_seconds_count", grpc_code="OK")
    assert rounds == calls == 2 * SESSIONS
    overhead = (delta("veil_gateway_round_seconds_sum")
                - delta("veil_gateway_anonymizer_call_seconds_sum", grpc_code="OK")) / rounds
    latencies = sorted(seconds for seconds, _ in results)
    print(f"\n{SESSIONS} sessions in {wall:.1f} s; per session p50 {latencies[SESSIONS // 2]:.2f} s, "
          f"max {latencies[-1]:.2f} s; mean gateway overhead per round {overhead * 1000:.1f} ms")
    assert overhead >= 0
