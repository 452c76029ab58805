"""Prometheus metrics shared by the services: the registry, the /metrics HTTP endpoint, GPU gauges.

Metrics are registered on prometheus_client's default REGISTRY (one per process), so every module
declares its metrics at import time and the endpoint serves them all.

GPU gauges come from NVML (`pynvml`, package nvidia-ml-py), imported lazily at the first scrape.
Without the package, the driver or a device, the collector exports `veil_gpu_available 0` and
nothing else; it never raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

__all__ = ["REGISTRY", "GpuCollector", "MetricsServer", "register_gpu_collector", "start_metrics_server"]


class MetricsServer:
    """The /metrics HTTP endpoint, served from a daemon thread."""

    def __init__(self, port: int, host: str, registry: CollectorRegistry = REGISTRY) -> None:
        self._httpd: WSGIServer
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> MetricsServer | None:
    """Serve the default registry on host:port; None when port is 0 (disabled)."""
    return MetricsServer(port, host) if port else None


class GpuCollector(Collector):
    """Per-GPU utilisation, memory and power, read from NVML on every scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._tried = False

    def _load(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._nvml = pynvml
                except Exception as exc:  # no package, no driver, no device: "no GPU"
                    log.info("GPU metrics disabled: NVML unavailable (%s)", exc)
            return self._nvml

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        labels = ["gpu", "name"]
        return {
            "available": GaugeMetricFamily("veil_gpu_available", "1 when NVML reports a GPU, else 0"),
            "utilization": GaugeMetricFamily("veil_gpu_utilization_ratio",
                                             "GPU busy fraction over the last sample period", labels=labels),
            "memory_used": GaugeMetricFamily("veil_gpu_memory_used_bytes", "GPU memory in use", labels=labels),
            "memory_total": GaugeMetricFamily("veil_gpu_memory_total_bytes", "GPU memory size", labels=labels),
            "power": GaugeMetricFamily("veil_gpu_power_watts", "GPU power draw", labels=labels),
        }

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        nvml = self._load()
        count = 0
        if nvml is not None:
            try:
                count = nvml.nvmlDeviceGetCount()
                for index in range(count):
                    self._read_device(nvml, index, families)
            except nvml.NVMLError as exc:
                log.warning("reading GPU metrics failed: %s", exc)
                count = 0
        families["available"].add_metric([], 1.0 if count else 0.0)
        yield families["available"]
        if count:
            yield from (family for key, family in families.items() if key != "available")

    @staticmethod
    def _read_device(nvml: Any, index: int, families: dict[str, GaugeMetricFamily]) -> None:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        labels = [str(index), name.decode() if isinstance(name, bytes) else str(name)]
        readings = {
            "utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            "memory_used": lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used),
            "memory_total": lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).total),
            "power": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # milliwatts
        }
        for key, read in readings.items():
            try:
                families[key].add_metric(labels, read())
            except nvml.NVMLError:  # e.g. power readings not supported on this board
                continue


_gpu_registered: set[int] = set()
_gpu_lock = threading.Lock()


def register_gpu_collector(registry: CollectorRegistry = REGISTRY) -> None:
    """Register the GPU gauges once per registry."""
    with _gpu_lock:
        if id(registry) not in _gpu_registered:
            registry.register(GpuCollector())
            _gpu_registered.add(id(registry))
