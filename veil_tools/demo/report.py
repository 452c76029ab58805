"""The demo's report.json: the session's rounds and eps, the release and the ledger, model
versions before and after, the unlearning job and its evaluation, and the services' metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from veil_tools.demo.session import PlayedSession
from veil_tools.localrun import MetricSamples


def message(value: Message) -> dict[str, Any]:
    return MessageToDict(value, preserving_proto_field_name=True)


def metric_summary(samples: MetricSamples) -> dict[str, float]:
    """veil_* samples as "name{label=value,...}" -> value; histogram buckets and creation
    timestamps left out (their _count and _sum stay)."""
    summary = {}
    for (name, labels), value in sorted(samples.items()):
        if not name.startswith("veil_") or name.endswith(("_bucket", "_created")):
            continue
        label_text = ",".join(f"{k}={v}" for k, v in labels)
        summary[f"{name}{{{label_text}}}" if label_text else name] = value
    return summary


def rounds_report(played: PlayedSession) -> list[dict[str, Any]]:
    return [{
        "number": r.message.number,
        "level": r.message.level,
        "attribute_epsilon": dict(r.message.attribute_epsilon),
        "identity_epsilon": r.message.identity_epsilon,
        "rho": r.message.rho,
        "answer": r.answer,
        "candidates": [{"index": c.index, "key": c.image.object.key,
                        "sha256": c.image.object.sha256, "receipt": message(c.receipt)}
                       for c in r.message.candidates],
    } for r in played.rounds]


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    partial.replace(path)
