"""Shared metrics helpers and the GPU gauges (NVML when present, `veil_gpu_available 0` when not)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from veil.log import JsonFormatter, request_id_var, setup_logging
from veil.metrics import GpuCollector, register_gpu_collector, start_metrics_server


def nvml_device_count() -> int:
    """Independent of the collector: how many GPUs NVML reports here (0 without driver/package)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount()
    except Exception:
        return 0


def test_gpu_gauges_scrape_without_errors() -> None:
    registry = CollectorRegistry()
    registry.register(GpuCollector())
    text = generate_latest(registry).decode()
    devices = nvml_device_count()
    assert re.search(rf"^veil_gpu_available {1.0 if devices else 0.0}$", text, re.M)
    totals = re.findall(r'^veil_gpu_memory_total_bytes\{gpu="(\d+)",name="[^"]+"\} (\S+)$', text, re.M)
    assert len(totals) == devices
    assert all(float(value) > 0 for _, value in totals)
    if devices:
        assert len(re.findall(r"^veil_gpu_utilization_ratio\{", text, re.M)) == devices
        for value in re.findall(r"^veil_gpu_utilization_ratio\{[^}]*\} (\S+)$", text, re.M):
            assert 0.0 <= float(value) <= 1.0
    else:
        assert "veil_gpu_memory_used_bytes{" not in text
    again = generate_latest(registry).decode()  # every scrape reads NVML afresh
    assert len(re.findall(r"^veil_gpu_available ", again, re.M)) == 1


def test_gpu_collector_registers_once() -> None:
    registry = CollectorRegistry()
    register_gpu_collector(registry)
    register_gpu_collector(registry)  # would raise "Duplicated timeseries" if registered twice
    assert "veil_gpu_available" in generate_latest(registry).decode()


def test_metrics_port_zero_disables_the_endpoint() -> None:
    assert start_metrics_server(0) is None


def test_json_log_lines_carry_the_request_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("debug", stream)
        token = request_id_var.set("rid-7")
        logging.getLogger("veil.test").info("hello %s", "world", extra={"fields": {"stage": "decode"}})
        request_id_var.reset(token)
        logging.getLogger("veil.test").debug("outside")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["msg"], first["level"], first["logger"], first["request_id"], first["stage"]) == (
        "hello world", "info", "veil.test", "rid-7", "decode")
    assert "request_id" not in second and second["level"] == "debug"
    with pytest.raises(ValueError, match="log level 'loud'"):
        setup_logging("loud")
    assert JsonFormatter().format(logging.LogRecord("x", logging.ERROR, "f", 1, "m", (), None)).startswith("{")
