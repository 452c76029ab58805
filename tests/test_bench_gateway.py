"""The gateway benchmark with modest numbers (the tiny model, 6 sessions): both settings run,
every round is joined to its anonymizer call, and the numbers are consistent."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from veil_tools.bench.gateway import access_log_durations, format_table, percentile, process_cpu_seconds, run

SESSIONS, ROUNDS, CANDIDATES = 6, 2, 2


def test_overhead_and_throughput_with_and_without_micro_batching(tiny_model_dir: Path) -> None:
    results = run(sessions=SESSIONS, rounds=ROUNDS, candidates=CANDIDATES, steps=2,
                  model_uri=str(tiny_model_dir))
    assert [r.setting for r in results] == ["off (batch 1)", "on (default)"]
    for result in results:
        assert result.errors == []
        assert result.rounds == len(result.round_latencies) == SESSIONS * ROUNDS
        # Every round of the run and the warm-up's one, joined by request id.
        assert len(result.overheads) == SESSIONS * ROUNDS + 1
        assert all(0 < overhead < max(result.round_latencies) for overhead in result.overheads)
        assert 0 < percentile(result.overheads, 50) <= percentile(result.overheads, 99)
        assert result.throughput == result.rounds / result.wall_seconds > 0
        # The gateway process did work for every round, and less of it than all the wall time
        # of both its cores.
        assert 0 < result.gateway_cpu_seconds < 2 * result.wall_seconds
    off, on = results
    # Batch size 1: every request runs alone (its candidates are its rows); by default requests
    # of several sessions share a batch.
    assert off.mean_batch_rows == CANDIDATES
    assert on.mean_batch_rows > CANDIDATES
    table = format_table(results)
    assert "gateway overhead p99 (ms)" in table and "off (batch 1)" in table
    assert "gateway CPU per round (ms)" in table


def test_process_cpu_seconds_reads_user_and_system_time_of_a_process() -> None:
    busy_until = time.process_time() + 0.2
    while time.process_time() < busy_until:
        pass
    # /proc counts in clock ticks (10 ms): the two clocks agree to a few ticks.
    assert abs(process_cpu_seconds(os.getpid()) - time.process_time()) < 0.05


def test_access_log_durations_keep_successful_calls_of_the_methods(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    lines = [
        {"event": "rpc", "method": "/veil.v1.Gateway/Feedback", "code": "OK", "duration_s": 0.5,
         "request_id": "a"},
        {"event": "rpc", "method": "/veil.v1.Gateway/Feedback", "code": "NOT_FOUND",
         "duration_s": 0.1, "request_id": "b"},
        {"event": "rpc", "method": "/veil.v1.Gateway/GetSession", "code": "OK", "duration_s": 0.1,
         "request_id": "c"},
        {"msg": "something else", "request_id": "d"},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    assert access_log_durations(log, ["/veil.v1.Gateway/Feedback"]) == {"a": 0.5}
