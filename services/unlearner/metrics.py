"""The unlearner's Prometheus metrics (besides the RPC metrics of veil.rpc and the GPU gauges of
veil.metrics). No label carries a tenant, model or session name."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

KINDS = ("train", "unlearn")
OUTCOMES = ("succeeded", "failed")

JOBS = Counter("veil_unlearning_jobs_total",
               "Jobs that ended, by kind (train, unlearn) and outcome (succeeded, failed)",
               ["kind", "outcome"])
JOB_SECONDS = Histogram(
    "veil_unlearning_job_seconds", "Running time of the attempt that ended a job, by kind",
    ["kind"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600))
JOBS_RUNNING = Gauge("veil_unlearning_jobs_running", "Jobs this process is running, by kind",
                     ["kind"])
JOBS_QUEUED = Gauge("veil_unlearning_jobs_queued",
                    "Jobs waiting to run (all replicas), as of the last poll of an idle worker")
JOBS_RESUMED = Counter(
    "veil_unlearning_jobs_resumed_total",
    "Jobs taken over after their runner stopped renewing the lease (a crash or restart), by kind",
    ["kind"])
JOBS_RETRIED = Counter(
    "veil_unlearning_jobs_retried_total",
    "Attempts that stopped on an unavailable dependency and were queued again, by kind", ["kind"])

# Every series exists from the start, so rate() and increase() see the first event.
for _kind in KINDS:
    JOB_SECONDS.labels(_kind)
    JOBS_RUNNING.labels(_kind)
    JOBS_RESUMED.labels(_kind)
    JOBS_RETRIED.labels(_kind)
    for _outcome in OUTCOMES:
        JOBS.labels(_kind, _outcome)
