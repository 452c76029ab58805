"""Concurrent accepts never overspend a cap: threads on each backend, two processes on PostgreSQL."""

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from fixtures_db import open_session

from veil.db import Database, DatabaseConfig
from veil.errors import FailedPrecondition
from veil.ledger import AttributeSpend, LedgerConfig, compose
from services.gateway.state import GatewayState

ROOT = Path(__file__).resolve().parent.parent
ACCEPTS = 20
ADMITTED = 5


def cap_admitting(n: int) -> float:
    """A cap between the composition of n and n + 1 releases of one RR(eps=1) event each."""
    event = AttributeSpend("Male", "randomized_response", 1.0).event()
    inside = compose([event] * n, 1e-6).composed_epsilon
    outside = compose([event] * (n + 1), 1e-6).composed_epsilon
    return (inside + outside) / 2


def prepare(state: GatewayState, tenant: str) -> list[str]:
    return [open_session(state, tenant, "subject", eps=1.0, candidates=1)[0].session_id
            for _ in range(ACCEPTS)]


def check_ledger(state: GatewayState, tenant: str, outcomes: dict[str, str]) -> None:
    counts = Counter(outcomes.values())
    assert counts == {"charged": ADMITTED, "refused": ACCEPTS - ADMITTED}, outcomes
    summary = state.ledger.summary(tenant, "subject")
    assert summary.entry_count == ADMITTED
    assert summary.composed_epsilon <= summary.cap
    event = AttributeSpend("Male", "randomized_response", 1.0).event()
    assert summary.composed_epsilon == pytest.approx(compose([event] * ADMITTED, 1e-6).composed_epsilon)
    assert len(state.ledger.entries(tenant, "subject")) == ADMITTED
    charged = {sid for sid, outcome in outcomes.items() if outcome == "charged"}
    for session_id in outcomes:
        release = state.releases.get_release(tenant, session_id)
        assert (release is not None) == (session_id in charged)


def test_concurrent_accepts_from_threads_charge_exactly_up_to_the_cap(gateway_db, tenant):
    state = GatewayState(gateway_db, ledger=LedgerConfig(cap=cap_admitting(ADMITTED), delta=1e-6))
    session_ids = prepare(state, tenant)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(ACCEPTS)

    def accept(session_id: str) -> None:
        barrier.wait()
        try:
            state.releases.accept(tenant, session_id, 0, request_id=f"req-{session_id}",
                                  release_key=f"releases/{session_id}.png", dependent_models=[],
                                  actor="thread")
            outcomes[session_id] = "charged"
        except FailedPrecondition:
            outcomes[session_id] = "refused"

    threads = [threading.Thread(target=accept, args=(sid,)) for sid in session_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    check_ledger(state, tenant, outcomes)


def test_concurrent_accepts_from_two_processes_on_postgresql(pg_url, tenant):
    cap = cap_admitting(ADMITTED)
    db = Database.from_config(DatabaseConfig(url=pg_url))
    state = GatewayState(db, ledger=LedgerConfig(cap=cap, delta=1e-6))
    session_ids = prepare(state, tenant)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "accept_worker.py"), "--url", pg_url,
         "--tenant", tenant, "--cap", repr(cap), "--sessions", ",".join(half)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for half in (session_ids[:ACCEPTS // 2], session_ids[ACCEPTS // 2:])]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:            # both replicas start accepting together
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outcomes: dict[str, str] = {}
        for worker in workers:
            out, _ = worker.communicate(timeout=180)
            assert worker.returncode == 0
            outcomes.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    per_process = [Counter(outcomes[s] for s in half).get("charged", 0)
                   for half in (session_ids[:ACCEPTS // 2], session_ids[ACCEPTS // 2:])]
    assert sum(per_process) == ADMITTED
    check_ledger(state, tenant, outcomes)
    db.dispose()
