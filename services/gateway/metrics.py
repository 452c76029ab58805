"""The gateway's Prometheus metrics (besides the RPC metrics of veil.rpc and the GPU gauges of
veil.metrics). No label carries a tenant, subject or session id.

Gateway overhead per round = veil_gateway_round_seconds - veil_gateway_anonymizer_call_seconds
(the same round's generation with and without the anonymizer's share).
"""

from prometheus_client import Counter, Histogram

SESSIONS_CREATED = Counter("veil_gateway_sessions_created_total", "Sessions created")
FEEDBACK = Counter("veil_gateway_feedback_total", "Feedback answers recorded, by kind", ["kind"])
SESSION_ROUNDS = Histogram(
    "veil_gateway_session_rounds", "Rounds an accepted session went through (feedback rounds)",
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50))
RELEASES = Counter("veil_gateway_releases_total", "Releases charged to a ledger")
RELEASE_EPSILON = Histogram(
    "veil_gateway_release_epsilon", "Plain-sum epsilon charged per release (its _sum is the "
    "total epsilon charged)", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
LEDGER_REFUSALS = Counter(
    "veil_gateway_ledger_refusals_total",
    "Releases refused because a subject's composed epsilon would pass VEIL_LEDGER_CAP")
ROUND_SECONDS = Histogram(
    "veil_gateway_round_seconds", "Generating one round: the anonymizer call and storing the round",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
ANONYMIZER_SECONDS = Histogram(
    "veil_gateway_anonymizer_call_seconds", "Anonymize calls from the gateway, by status code",
    ["grpc_code"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
UNLEARNING_REQUESTS = Counter("veil_gateway_unlearning_requests_total",
                              "Unlearning requests queued by accepted releases (one per model)")
UNLEARNING_JOBS = Counter(
    "veil_gateway_unlearning_jobs_total",
    "Unlearning jobs the gateway saw finish, by outcome (succeeded, failed, retried)", ["outcome"])
UNLEARNING_JOB_SECONDS = Histogram(
    "veil_gateway_unlearning_job_seconds", "Unlearning jobs from creation to their end",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200))
ORIGINALS_DELETED = Counter("veil_gateway_originals_deleted_total",
                            "Originals deleted by the retention policy")
RECOVERED = Counter("veil_gateway_recovered_total",
                    "Work a dead replica left unfinished and this one finished, by kind "
                    "(release, round)", ["kind"])
