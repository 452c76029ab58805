"""The unlearner's settings (environment variables, validated at start-up; see deploy/README.md).
The server, the database and the object store are configured by veil.rpc, veil.db and veil.store."""

from __future__ import annotations

from dataclasses import dataclass

from veil.config import env_field
from veil.errors import ConfigError
from veil.rpc.config import EnvLoadable
from veil.unlearning.method_names import METHODS
from veil.unlearning.verification import POLICIES, VerificationPolicy

GRPC_ADDRESS = "[::]:50052"
METRICS_PORT = 9102


@dataclass(frozen=True)
class UnlearnerConfig(EnvLoadable):
    workers: int = env_field("VEIL_UNLEARNER_WORKERS", 1, min=1, max=64,
                             doc="jobs run at once by this process (each in a thread of its own)")
    poll_seconds: float = env_field(
        "VEIL_UNLEARNER_POLL_SECONDS", 2.0, min=0.05, max=600.0,
        doc="how often an idle worker looks for a queued job (or one whose runner died)")
    lease_seconds: float = env_field(
        "VEIL_UNLEARNER_LEASE_SECONDS", 120.0, min=1.0, max=86400.0,
        doc="a running job whose lease is not renewed for this long is taken to be abandoned (its "
            "process died) and is resumed from the start")
    heartbeat_seconds: float = env_field(
        "VEIL_UNLEARNER_HEARTBEAT_SECONDS", 10.0, min=0.05, max=3600.0,
        doc="how often a running job renews its lease and records its progress; at most a third "
            "of the lease")
    max_attempts: int = env_field(
        "VEIL_UNLEARNER_MAX_ATTEMPTS", 3, min=1, max=100,
        doc="times a job may be started (after crashes or an unavailable store) before it is FAILED")
    retry_seconds: float = env_field(
        "VEIL_UNLEARNER_RETRY_SECONDS", 30.0, min=0.0, max=86400.0,
        doc="a job that stopped on an unavailable dependency (store, database) runs again after this")
    job_time_limit_seconds: float = env_field(
        "VEIL_UNLEARNER_JOB_TIME_LIMIT_SECONDS", 6 * 3600.0, min=1.0, max=7 * 86400.0,
        doc="an attempt of a job running longer than this stops at its next progress report and "
            "the job is FAILED with the reason")
    watch_poll_seconds: float = env_field(
        "VEIL_UNLEARNER_WATCH_POLL_SECONDS", 1.0, min=0.05, max=60.0,
        doc="WatchJob checks the job's row this often")
    default_method: str = env_field(
        "VEIL_UNLEARNER_DEFAULT_METHOD", "second", choices=METHODS,
        doc="method of an Unlearn request that names none (UNLEARN_METHOD_UNSPECIFIED)")
    verify_policy: str = env_field(
        "VEIL_UNLEARNER_VERIFY_POLICY", "enforce", choices=tuple(POLICIES),
        doc="which Unlearn updates publish, after each is measured on its replaced originals against "
            "held-out data (loss gap, and canaries when the manifest marks them; recorded in the "
            "card): enforce: all but those that did not move the originals toward held-out "
            "behaviour, which are kept unpublished (unverified) and fail their job; strict: only "
            "those measured to move them (not when the parent shows nothing to remove); record: all")
    verify_min_progress: float = env_field(
        "VEIL_UNLEARNER_VERIFY_MIN_PROGRESS", 0.1, min=0.0, max=1.0,
        doc="fraction of the parent's loss gap (and canary success) an update must remove to count "
            "as having moved the originals toward held-out behaviour")
    classifier_channels: str = env_field(
        "VEIL_CLASSIFIER_CHANNELS", "16,32,64",
        doc="conv widths of the classifiers Train builds, comma-separated (one 2x pooling each)")
    classifier_embedding_dim: int = env_field(
        "VEIL_CLASSIFIER_EMBEDDING_DIM", 64, min=1, max=65536,
        doc="width of the embedding layer of the classifiers Train builds")

    def __post_init__(self) -> None:
        if self.heartbeat_seconds * 3 > self.lease_seconds:
            raise ConfigError(f"VEIL_UNLEARNER_HEARTBEAT_SECONDS={self.heartbeat_seconds:g} must be at "
                              f"most a third of VEIL_UNLEARNER_LEASE_SECONDS={self.lease_seconds:g}, so "
                              "that a late heartbeat does not lose the lease")
        parse_channels(self.classifier_channels)

    @property
    def verification(self) -> VerificationPolicy:
        return VerificationPolicy(self.verify_policy, self.verify_min_progress)

    @property
    def channels(self) -> tuple[int, ...]:
        return parse_channels(self.classifier_channels)


def parse_channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise ConfigError(f"VEIL_CLASSIFIER_CHANNELS={text!r}: expected positive integers, "
                          "comma-separated, e.g. 16,32,64")
    return channels
