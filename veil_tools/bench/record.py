"""Benchmark records: the figures of one `python -m veil_tools.bench` run as JSON, and their comparison
with an earlier record.

A record names the machine, the library versions, the git commit, the settings and seeds, and for
each figure its unit, which way is better and the min/median/max of its samples (repetitions
measured side by side). `compare` puts two records' medians next to each other and flags a
figure as a regression when it moved the wrong way by more than the threshold.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import socket
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from veil.errors import InvalidArgument

SCHEMA = "veil-bench/1"
ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("veil", "torch", "onnxruntime", "onnxruntime-gpu", "numpy", "diffusers", "grpcio",
            "nanio")
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    """One measured quantity: every sample of it, in `unit`."""

    name: str  # "<section>.<what>", e.g. "decode.batch16.ratio"
    unit: str
    better: Better
    samples: tuple[float, ...]

    def summary(self) -> dict[str, Any]:
        finite = [s for s in self.samples if math.isfinite(s)]
        stats = ({"min": min(finite), "median": statistics.median(finite), "max": max(finite)}
                 if finite else {"min": None, "median": None, "max": None})
        return {"unit": self.unit, "better": self.better, **stats, "samples": list(self.samples)}


def figure(name: str, unit: str, better: Better, samples: Sequence[float]) -> Figure:
    return Figure(name, unit, better, tuple(float(s) for s in samples))


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() it is
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "gpu": _gpu_name()}


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                    check=False, timeout=10)
        except OSError:
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def build_record(name: str, settings: Mapping[str, Any], figures: Sequence[Figure]) -> dict[str, Any]:
    return {"schema": SCHEMA, "name": name, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions(), "git": git_state(),
            "settings": dict(settings), "figures": {f.name: f.summary() for f in figures}}


def write_record(record: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"cannot read benchmark record {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise InvalidArgument(f"{path} is not a {SCHEMA} benchmark record")
    return record


@dataclass(frozen=True)
class Comparison:
    name: str
    unit: str
    old: float
    new: float
    regression: bool

    @property
    def ratio(self) -> float:
        return self.new / self.old if self.old else math.inf


def compare(old: Mapping[str, Any], new: Mapping[str, Any], threshold: float) -> list[Comparison]:
    """Medians of the figures both records hold; a regression is a figure worse than the old one
    by more than `threshold` (0.2: 20% slower, or 20% more time)."""
    if threshold < 0:
        raise InvalidArgument(f"threshold must be >= 0, got {threshold}")
    rows = []
    for name in sorted(old["figures"].keys() & new["figures"].keys()):
        before, after = old["figures"][name], new["figures"][name]
        if before["median"] is None or after["median"] is None:
            continue
        was, now = before["median"], after["median"]
        worse = now < was / (1 + threshold) if after["better"] == "higher" else now > was * (1 + threshold)
        rows.append(Comparison(name, after["unit"], was, now, worse))
    return rows


def format_comparison(rows: Sequence[Comparison], old: Mapping[str, Any],
                      new: Mapping[str, Any]) -> str:
    def label(record: Mapping[str, Any]) -> str:
        commit = (record["git"].get("commit") or "?")[:10]
        return f"{record['name']} ({record['created']}, {commit}, {record['machine']['cpu']})"

    lines = [f"old: {label(old)}", f"new: {label(new)}",
             f"{'figure':<44} {'unit':<14} {'old':>10} {'new':>10} {'new/old':>8}"]
    for row in rows:
        lines.append(f"{row.name:<44} {row.unit:<14} {row.old:>10.4g} {row.new:>10.4g} "
                     f"{row.ratio:>8.2f}{'  REGRESSION' if row.regression else ''}")
    return "\n".join(lines)
