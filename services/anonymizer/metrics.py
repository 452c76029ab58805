"""The anonymizer's Prometheus metrics (base units; no tenant or subject labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge("veil_anonymizer_queue_depth", "Requests waiting for a batch")
QUEUE_WAIT_SECONDS = Histogram(
    "veil_anonymizer_queue_wait_seconds", "Time from a request's arrival to the start of its batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
BATCH_ROWS = Histogram(
    "veil_anonymizer_batch_rows", "Rows (images x candidates) decoded per batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
BATCHES = Counter(
    "veil_anonymizer_batches_total",
    "Batches run, by outcome: completed, aborted (every request gone), failed", ("outcome",))
DIFFUSION_STEP_SECONDS = Histogram(
    "veil_anonymizer_diffusion_step_seconds",
    "Time of one diffusion step of a batch, by stage (invert, decode, verify: a decode again)",
    ("stage",), buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IMAGES = Counter(
    "veil_anonymizer_images_total",
    "Input images of finished requests, by outcome: succeeded, invalid, rejected (queue full), "
    "cancelled (cancelled or past the deadline), failed (an upload refused before its images were "
    "counted counts as one)", ("outcome",))
FACE_CANDIDATES = Counter(
    "veil_anonymizer_face_candidates_total",
    "Anonymized face candidates, by outcome: offered, refused (never read as its released values "
    "within VEIL_DECODE_TRIES decodes)", ("outcome",))
DECODE_TRIES = Histogram(
    "veil_anonymizer_decode_tries", "Decodes of one face candidate under verified edits",
    buckets=(1, 2, 3, 4, 5, 6, 8, 10))
