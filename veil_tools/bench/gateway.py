"""Gateway overhead and throughput on loopback, without and with micro-batching.

For each anonymizer setting (VEIL_BATCH_MAX_SIZE=1, then the default) the three services start
on loopback (veil_tools.localrun, fresh state), one session warms them up, then `--sessions` sessions
run at once through veil.client: upload, CreateSession (round 1), `--rounds - 1` MORE_PRIVACY
rounds, ACCEPT. Reported side by side:

- throughput: rounds generated per second of wall time while every session runs;
- round latency p50/p99: CreateSession / Feedback as the client sees them;
- gateway overhead p50/p99: for each round, the gateway's own handling time of the RPC minus
  the anonymizer's handling time of the Anonymize call it made (both from the services'
  access logs, joined by the request id the gateway forwards): auth, SQL, the round's storage
  and the hop to the anonymizer, without the anonymizer's queue and diffusion time;
- the anonymizer's mean micro-batch (rows per batch, from its metrics);
- gateway CPU per round: user + system CPU seconds of the gateway process (/proc/<pid>/stat)
  while the sessions run (its background loops included), divided by the rounds; unlike wall
  times, a busy shared machine hardly moves it.

The anonymizer runs `--steps` DDIM steps (default 4, not the card's 20): the overhead does not
depend on them, and the batching comparison keeps its shape at a fraction of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from veil.client import Deadlines, GatewayClient
from veil.data import generate_dataset, load_celeba
from veil.images import encode_png
from veil_tools.localrun import LocalServices

ROUND_METHODS = ("/veil.v1.Gateway/CreateSession", "/veil.v1.Gateway/Feedback")
ANONYMIZE_METHOD = "/veil.v1.Anonymizer/Anonymize"
BATCHING = {"off (batch 1)": "1", "on (default)": None}


@dataclass(frozen=True)
class BenchResult:
    setting: str
    sessions: int
    rounds: int
    errors: list[str]  # one line per session that failed
    wall_seconds: float
    round_latencies: list[float]  # client-side, seconds
    overheads: list[float]  # gateway minus anonymizer, seconds, one per round joined by request id
    mean_batch_rows: float
    gateway_cpu_seconds: float  # user + system of the gateway process while the sessions ran

    @property
    def throughput(self) -> float:
        return self.rounds / self.wall_seconds

    @property
    def gateway_cpu_ms_per_round(self) -> float:
        return 1000 * self.gateway_cpu_seconds / self.rounds if self.rounds else float("nan")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc/<pid>/stat, fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def access_log_durations(log: Path, methods: Sequence[str]) -> dict[str, float]:
    """request id -> seconds of each successful RPC of `methods` in a service's JSON log."""
    durations = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line some library printed
        if (isinstance(entry, dict) and entry.get("event") == "rpc" and entry.get("code") == "OK"
                and entry.get("method") in methods and "request_id" in entry):
            durations[entry["request_id"]] = float(entry["duration_s"])
    return durations


def distinct_faces(images: np.ndarray, count: int) -> list[bytes]:
    """`count` PNGs of `images` (uint8 N x H x W x 3), no two alike (one pixel marks each), so no
    two sessions share an original."""
    out = []
    for i in range(count):
        pixels = images[i % len(images)].copy()
        pixels[0, 0] = (i % 256, (i // 256) % 256, 255 - i % 256)
        out.append(encode_png(pixels))
    return out


def one_session(services: LocalServices, face: bytes, subject: str, rounds: int,
                candidates: int) -> list[float]:
    """The client-side seconds of each round of one session (upload, rounds, accept)."""
    latencies = []
    with GatewayClient(services.gateway.target, services.token,
                       deadlines=Deadlines(generate=3600.0)) as client:
        image = client.upload_image(face, subject_id=subject)
        started = time.perf_counter()
        session = client.create_session(subject, image, protect=["Male"], level=5,
                                        candidates=candidates)
        latencies.append(time.perf_counter() - started)
        latest = session.latest_round
        for _ in range(rounds - 1):
            started = time.perf_counter()
            latest = client.feedback(session.session_id, "more").round
            latencies.append(time.perf_counter() - started)
        if latest.candidates:  # verified edits may refuse every candidate of a round
            client.feedback(session.session_id, "accept", candidate=latest.candidates[0].index)
    return latencies


def run_setting(setting: str, batch_max_size: str | None, *, sessions: int, rounds: int,
                candidates: int, steps: int, model_uri: str | None, work: Path,
                env: dict[str, str] | None = None) -> BenchResult:
    """`env`: more variables of the anonymizer (e.g. its device)."""
    anonymizer_env = {"VEIL_SAMPLING_STEPS": str(steps), **(env or {})}
    if batch_max_size is not None:
        anonymizer_env["VEIL_BATCH_MAX_SIZE"] = batch_max_size
    services = LocalServices(work / "var", ports="free", model_uri=model_uri,
                             env={"anonymizer": anonymizer_env,
                                  "gateway": {"VEIL_LEDGER_CAP": "1000"}})
    with services:
        folder = generate_dataset(work / "faces", identities=4, per_identity=2, seed=1,
                                  size=services.model_info().image_size, workers=1)
        faces = distinct_faces(load_celeba(folder).images, sessions + 1)
        one_session(services, faces[-1], "warm-up", 1, candidates)
        batches_before = services.anonymizer.metrics()
        gateway_pid = services.gateway.process.pid
        cpu_before = process_cpu_seconds(gateway_pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(sessions) as pool:
            futures = [pool.submit(one_session, services, faces[i], f"bench-{i}", rounds, candidates)
                       for i in range(sessions)]
            outcomes: list[list[float]] = []
            errors: list[str] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except Exception as exc:  # reported: the benchmark counts errors, not stops
                    errors.append(f"{type(exc).__name__}: {exc}")
        wall = time.perf_counter() - started
        gateway_cpu = process_cpu_seconds(gateway_pid) - cpu_before
        batches_after = services.anonymizer.metrics()
    rows = (batches_after.get(("veil_anonymizer_batch_rows_sum", ()), 0.0)
            - batches_before.get(("veil_anonymizer_batch_rows_sum", ()), 0.0))
    batches = (batches_after.get(("veil_anonymizer_batch_rows_count", ()), 0.0)
               - batches_before.get(("veil_anonymizer_batch_rows_count", ()), 0.0))
    gateway = access_log_durations(services.gateway.log, ROUND_METHODS)
    anonymizer = access_log_durations(services.anonymizer.log, (ANONYMIZE_METHOD,))
    # The warm-up's round is in both logs too; it is one of sessions * rounds + 1 joined rounds.
    overheads = [gateway[rid] - anonymizer[rid] for rid in gateway if rid in anonymizer]
    latencies = [seconds for outcome in outcomes for seconds in outcome]
    return BenchResult(setting, sessions, len(latencies), errors, wall,
                       latencies, overheads, rows / batches if batches else float("nan"),
                       gateway_cpu)


def run(*, sessions: int, rounds: int, candidates: int, steps: int,
        model_uri: str | None = None, settings: Sequence[str] = tuple(BATCHING),
        env: dict[str, str] | None = None) -> list[BenchResult]:
    """One fresh set of services per batching setting (keys of BATCHING), one after another."""
    results = []
    for setting in settings:
        batch_max_size = BATCHING[setting]
        with tempfile.TemporaryDirectory(prefix="veil-bench-gateway-") as work:
            results.append(run_setting(setting, batch_max_size, sessions=sessions, rounds=rounds,
                                       candidates=candidates, steps=steps, model_uri=model_uri,
                                       work=Path(work), env=env))
    return results


def format_table(results: Sequence[BenchResult]) -> str:
    lines = [f"{'micro-batching':<28}" + "".join(f"{r.setting:>16}" for r in results)]

    def row(label: str, values: Sequence[float], fmt: str) -> None:
        lines.append(f"{label:<28}" + "".join(f"{format(v, fmt):>16}" for v in values))

    row("rounds", [r.rounds for r in results], "d")
    row("errors", [len(r.errors) for r in results], "d")
    row("throughput (rounds/s)", [r.throughput for r in results], ".2f")
    row("round latency p50 (s)", [percentile(r.round_latencies, 50) for r in results], ".2f")
    row("round latency p99 (s)", [percentile(r.round_latencies, 99) for r in results], ".2f")
    row("gateway overhead p50 (ms)", [1000 * percentile(r.overheads, 50) for r in results], ".1f")
    row("gateway overhead p99 (ms)", [1000 * percentile(r.overheads, 99) for r in results], ".1f")
    row("rounds joined for overhead", [len(r.overheads) for r in results], "d")
    row("mean batch (rows)", [r.mean_batch_rows for r in results], ".1f")
    row("gateway CPU per round (ms)", [r.gateway_cpu_ms_per_round for r in results], ".1f")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.bench.gateway", description=__doc__)
    parser.add_argument("--sessions", type=int, default=64, help="concurrent sessions (default 64)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per session (default 2)")
    parser.add_argument("--candidates", type=int, default=1, help="candidates per round (default 1)")
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps of the anonymizer (default 4)")
    parser.add_argument("--model", default=None, help="VEIL_MODEL_URI (default: the shipped model)")
    args = parser.parse_args(argv)
    print(f"gateway on loopback: {args.sessions} concurrent sessions x {args.rounds} rounds, "
          f"{args.candidates} candidate(s), {args.steps} steps", flush=True)
    results = run(sessions=args.sessions, rounds=args.rounds, candidates=args.candidates,
                  steps=args.steps, model_uri=args.model)
    print(format_table(results))
    for result in results:
        for error in result.errors[:3]:
            print(f"error ({result.setting}): {error}", file=sys.stderr)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
