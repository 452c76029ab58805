"""The sections of `python -m veil_tools.bench`, each a function of the run's settings to its figures.

Figures are named "<section>.<what>"; a figure's samples are its repetitions (or, for per-round
times, its rounds). Quick mode shrinks every section to seconds (tests use it); its figures carry
the same names only where they measure the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from veil_tools.bench.record import Figure, figure
from veil.errors import Unavailable

if TYPE_CHECKING:  # the service sections import the client stack only when they run
    from veil_tools.bench.gateway import BenchResult


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    device: str  # "cpu" or "cuda"
    model_dir: Path
    repeats: int
    seed: int

    @property
    def anonymizer_env(self) -> dict[str, str]:
        return {"VEIL_ANONYMIZER_DEVICE": self.device}


def decode(settings: BenchSettings) -> list[Figure]:
    """Decode throughput, eager torch vs ONNX Runtime, batch 1 and 16 (quick: 2 steps)."""
    from veil_tools.bench import diffusion

    return diffusion.figures(settings.model_dir, (1, 16), settings.repeats, settings.device,
                             steps=2 if settings.quick else None)


def _sessions(settings: BenchSettings) -> dict[str, int]:
    # 16 concurrent callers, two rounds each; quick: 4 callers of one round, 2 DDIM steps.
    return ({"sessions": 4, "rounds": 1, "candidates": 1, "steps": 2} if settings.quick
            else {"sessions": 16, "rounds": 2, "candidates": 1, "steps": 4})


def batching(settings: BenchSettings) -> list[Figure]:
    """Rounds/s through the gateway with the anonymizer's micro-batching off and on, 16 callers.
    The settings alternate per repetition, each on fresh services."""
    from veil_tools.bench import gateway

    rates: dict[str, list[float]] = {"off": [], "on": []}
    rows: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(settings.repeats):
        off, on = gateway.run(**_sessions(settings), model_uri=str(settings.model_dir),
                              env=settings.anonymizer_env)
        for label, result in (("off", off), ("on", on)):
            _raise_errors(result)
            rates[label].append(result.throughput)
            rows[label].append(result.mean_batch_rows)
    return [figure("batching.off.rounds_per_s", "rounds/s", "higher", rates["off"]),
            figure("batching.on.rounds_per_s", "rounds/s", "higher", rates["on"]),
            figure("batching.ratio", "on/off", "higher",
                   [on / off for off, on in zip(rates["off"], rates["on"], strict=True)]),
            figure("batching.on.mean_batch_rows", "rows", "higher", rows["on"])]


def gateway_overhead(settings: BenchSettings) -> list[Figure]:
    """The gateway's own cost per round (micro-batching on): CPU ms of its process per round,
    and wall time minus the anonymizer's share, per round."""
    from veil_tools.bench import gateway

    cpu, p50, p99, latency = [], [], [], []
    for _ in range(settings.repeats):
        (result,) = gateway.run(**_sessions(settings), model_uri=str(settings.model_dir),
                                settings=("on (default)",), env=settings.anonymizer_env)
        _raise_errors(result)
        cpu.append(result.gateway_cpu_ms_per_round)
        p50.append(1000 * gateway.percentile(result.overheads, 50))
        p99.append(1000 * gateway.percentile(result.overheads, 99))
        latency.append(gateway.percentile(result.round_latencies, 50))
    return [figure("gateway.cpu_ms_per_round", "CPU ms", "lower", cpu),
            figure("gateway.overhead_p50_ms", "ms", "lower", p50),
            figure("gateway.overhead_p99_ms", "ms", "lower", p99),
            figure("gateway.round_latency_p50_s", "s", "lower", latency)]


def _raise_errors(result: BenchResult) -> None:
    if result.errors:
        raise Unavailable(f"{len(result.errors)} session(s) failed ({result.setting}): {result.errors[0]}")


def store(settings: BenchSettings) -> list[Figure]:
    """Put/get MiB/s of 1 MiB and 50 MiB objects (quick: 1 and 4 MiB), local and S3 (nanio)."""
    from veil_tools.bench import store as store_bench

    return store_bench.figures((1, 4) if settings.quick else (1, 50), settings.repeats, settings.seed)


def unlearning(settings: BenchSettings) -> list[Figure]:
    """First and second order unlearning vs retraining at 1% and 5% replaced, on a small data set
    (the full study: python -m veil_tools.bench.unlearning). CPU seconds, speedup over retraining and
    the test-accuracy gap to the retrained model. Untuned: tuning is for where an update lands, and
    would cost the section more than the times it measures."""
    from veil_tools.bench.unlearning import BenchConfig, run

    config = BenchConfig(identities=100 if settings.quick else 1000, size=32, seeds=(settings.seed,),
                         tune=False, epochs=2 if settings.quick else 5, fractions=(0.01, 0.05),
                         methods=("first", "second-cg"))
    rows = run(config, log=lambda line: None)
    out = []
    for row in rows:
        if "cpu_time_seconds" not in row:
            continue  # the parent ("none") and failed methods have no time
        prefix = f"unlearning.{round(100 * row['fraction'])}pct.{row['method']}"
        out.append(figure(f"{prefix}.cpu_s", "CPU s", "lower", [row["cpu_time_seconds"]]))
        if row["method"] != "retrain":
            retrain = next(r for r in rows if r["fraction"] == row["fraction"] and r["method"] == "retrain")
            out += [figure(f"{prefix}.speedup", "x retrain", "higher", [row["speedup"]]),
                    figure(f"{prefix}.accuracy_gap_pt", "points", "lower",
                           [100 * abs(row["test_accuracy"] - retrain["test_accuracy"])])]
    return out


SECTIONS: dict[str, Callable[[BenchSettings], list[Figure]]] = {
    "decode": decode,
    "batching": batching,
    "gateway": gateway_overhead,
    "store": store,
    "unlearning": unlearning,
}
