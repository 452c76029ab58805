"""The gateway's own settings (environment variables, validated at start-up). The database, the
ledger, the controller, idempotency and retention are configured by services.gateway.state; the server,
the client channels and the object store by veil.rpc and veil.store."""

from __future__ import annotations

import os
from dataclasses import dataclass

from veil.config import env_field
from veil.errors import ConfigError
from veil.faces.photo import DEFAULT_MAX_SIDE
from veil.rpc.config import MIB, EnvLoadable, parse_address
from veil.unlearning.method_names import DEFAULT, METHODS

GRPC_ADDRESS = "[::]:50050"
METRICS_PORT = 9100
UNLEARN_METHODS = (DEFAULT, *METHODS)


@dataclass(frozen=True)
class GatewayConfig(EnvLoadable):
    tenant_tokens_file: str = env_field(
        "VEIL_TENANT_TOKENS_FILE", doc="JSON object mapping caller tokens to tenant ids (required)")
    anonymizer_target: str = env_field("VEIL_ANONYMIZER_TARGET", "127.0.0.1:50051",
                                       doc="the anonymizer, host:port")
    unlearner_target: str | None = env_field(
        "VEIL_UNLEARNER_TARGET", None,
        doc="the unlearner, host:port; unset: no models are registered, so no unlearning")
    anonymizer_timeout_seconds: float = env_field(
        "VEIL_ANONYMIZER_TIMEOUT_SECONDS", 300.0, min=1.0, max=3600.0,
        doc="deadline of one round's Anonymize call")
    dependency_check_seconds: float = env_field(
        "VEIL_DEPENDENCY_CHECK_SECONDS", 5.0, min=0.05, max=300.0,
        doc="period of the anonymizer health check behind the gateway's readiness and circuit breaker")
    dependency_check_timeout_seconds: float = env_field(
        "VEIL_DEPENDENCY_CHECK_TIMEOUT_SECONDS", 2.0, min=0.05, max=60.0,
        doc="an anonymizer not answering its health check within this is taken to be down")
    anonymizer_breaker_failures: int = env_field(
        "VEIL_ANONYMIZER_BREAKER_FAILURES", 3, min=1, max=100,
        doc="consecutive anonymizer calls failing UNAVAILABLE or DEADLINE_EXCEEDED that open the circuit")
    anonymizer_breaker_cooldown_seconds: float = env_field(
        "VEIL_ANONYMIZER_BREAKER_COOLDOWN_SECONDS", 10.0, min=0.1, max=600.0,
        doc="while the circuit is open, calls fail at once with UNAVAILABLE; after this one trial call passes")
    unlearner_timeout_seconds: float = env_field(
        "VEIL_UNLEARNER_TIMEOUT_SECONDS", 30.0, min=0.1, max=600.0,
        doc="deadline of one call to the unlearner")
    max_upload_bytes: int = env_field("VEIL_MAX_UPLOAD_BYTES", 32 * MIB, min=1024, max=1024 * MIB,
                                      doc="largest image UploadImage accepts")
    max_photo_side: int = env_field("VEIL_MAX_PHOTO_SIDE", DEFAULT_MAX_SIDE, min=16, max=16384,
                                    doc="longest side of an input photo, in pixels (larger ones are refused "
                                        "from their header)")
    presigned_url_seconds: int = env_field(
        "VEIL_PRESIGNED_URL_SECONDS", 3600, min=1, max=7 * 86400,
        doc="lifetime of the presigned candidate and release URLs (S3 backend)")
    recovery_interval_seconds: float = env_field(
        "VEIL_RECOVERY_INTERVAL_SECONDS", 5.0, min=0.1, max=3600.0,
        doc="period of the loop that publishes charged releases and regenerates rounds a dead "
            "replica left unfinished")
    round_lease_seconds: float = env_field(
        "VEIL_ROUND_LEASE_SECONDS", 3.0, min=0.5, max=600.0,
        doc="a replica generating a round renews its lease every third of this; a round whose "
            "lease lapsed (its replica died) is taken over by another replica")
    stream_poll_seconds: float = env_field(
        "VEIL_STREAM_POLL_SECONDS", 1.0, min=0.05, max=60.0,
        doc="StreamRounds checks the database this often for rounds other replicas generate")
    unlearning_batch_size: int = env_field(
        "VEIL_UNLEARNING_BATCH_SIZE", 64, min=1, max=10000,
        doc="most replacement pairs sent to the unlearner in one Unlearn request")
    unlearning_poll_seconds: float = env_field(
        "VEIL_UNLEARNING_POLL_SECONDS", 5.0, min=0.05, max=3600.0,
        doc="period of the unlearning dispatcher (batching, job checks, retention)")
    unlearning_max_attempts: int = env_field(
        "VEIL_UNLEARNING_MAX_ATTEMPTS", 3, min=1, max=100,
        doc="unlearning jobs a request may fail before it is left FAILED for an operator")
    unlearning_method: str = env_field(
        "VEIL_UNLEARNING_METHOD", "default", choices=UNLEARN_METHODS,
        doc="unlearning method asked for; default: the unlearner's own choice")

    def __post_init__(self) -> None:
        parse_address("VEIL_ANONYMIZER_TARGET", self.anonymizer_target)
        if self.unlearner_target is not None:
            parse_address("VEIL_UNLEARNER_TARGET", self.unlearner_target)
        if not os.access(self.tenant_tokens_file, os.R_OK):
            raise ConfigError(f"VEIL_TENANT_TOKENS_FILE={self.tenant_tokens_file!r}: "
                              f"not a readable file")
