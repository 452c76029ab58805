"""The operators' Grafana dashboard queries only metrics the services really export: real
anonymizer, gateway and unlearner processes are scraped and every veil_* name of the dashboard's
PromQL must be among their series."""

from __future__ import annotations

import re

from veil_tools.k8svalidate import K8S_DIR, dashboard_queries, dashboards, promql_metrics, render
from veil.metrics import GpuCollector

HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def exported_names(samples) -> set[str]:
    return {HISTOGRAM_SERIES.sub("", name) for name, _ in samples if not name.endswith("_created")}


def test_every_dashboard_metric_is_exported_by_a_service(anonymizer_service, gateway, unlearners,
                                                         new_tenant, face_png) -> None:
    unlearner = unlearners()
    # One round through the gateway, so that labelled series (the Anonymize call's status code)
    # exist as they do on any serving install.
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[0], subject_id="dashboard")
        client.create_session("dashboard", image, protect=["Male"], level=5, candidates=1)
    exported = set().union(*(exported_names(service.metrics())
                             for service in (anonymizer_service, gateway, unlearner)))
    # The GPU gauges are series only where NVML sees a GPU; without one the collector exports
    # veil_gpu_available 0 and declares the others (what a GPU node's scrape carries).
    gpu_gauges = {family.name for family in GpuCollector().describe()}
    assert "veil_gpu_available" in exported
    (dashboard,) = dashboards(render(K8S_DIR / "overlays" / "gpu")).values()
    queried = set().union(*(promql_metrics(expr) for expr in dashboard_queries(dashboard)))
    # The panels the operators asked for, each by the metric it reads.
    assert {"veil_gateway_round_seconds", "veil_anonymizer_queue_depth", "veil_anonymizer_batch_rows",
            "veil_gpu_utilization_ratio", "veil_gpu_memory_used_bytes", "veil_gpu_power_watts",
            "veil_gateway_ledger_refusals_total", "veil_unlearning_jobs_running", "veil_unlearning_jobs_total",
            "veil_grpc_server_handled_total"} <= queried
    assert queried - exported - gpu_gauges == set()
