"""Object-store configuration (environment variables) and `open_store`."""

from __future__ import annotations

from dataclasses import dataclass

from veil.config import env_field
from veil.errors import ConfigError, InvalidArgument
from veil.store.base import ObjectStore
from veil.store.keys import validate_bucket

MIB = 1 << 20


@dataclass(frozen=True)
class StoreConfig:
    backend: str = env_field("VEIL_STORE_BACKEND", "local", choices=("local", "s3"),
                             doc="object store backend: local (a directory) or s3 (MinIO/S3)")
    root: str = env_field("VEIL_STORE_ROOT", "./var/objects",
                          doc="directory of the local backend")
    bucket: str = env_field("VEIL_S3_BUCKET", "veil",
                            doc="bucket of the store (the local backend's subdirectory)")
    s3_endpoint: str | None = env_field("VEIL_S3_ENDPOINT", None,
                                        doc="S3 endpoint host[:port], no scheme (required for s3)")
    s3_access_key: str | None = env_field("VEIL_S3_ACCESS_KEY", None, doc="S3 access key id (required for s3)")
    s3_secret_key: str | None = env_field("VEIL_S3_SECRET_KEY", None, secret=True,
                                          doc="S3 secret key (required for s3)")
    s3_region: str = env_field("VEIL_S3_REGION", "us-east-1", doc="S3 region (signing)")
    s3_secure: bool = env_field("VEIL_S3_SECURE", True, doc="use HTTPS to reach the S3 endpoint")
    s3_ca_file: str | None = env_field("VEIL_S3_CA_FILE", None,
                                       doc="CA bundle that signs the S3 endpoint's certificate")
    s3_create_bucket: bool = env_field("VEIL_S3_CREATE_BUCKET", True,
                                       doc="create the bucket at start-up when it is missing")
    s3_retries: int = env_field("VEIL_S3_RETRIES", 4, min=0, max=20,
                                doc="retries of a failed S3 request (connection errors, 5xx, throttling)")
    s3_backoff_seconds: float = env_field("VEIL_S3_BACKOFF_SECONDS", 0.2, min=0.0, max=60.0,
                                          doc="first retry delay; doubles per retry")
    s3_backoff_max_seconds: float = env_field("VEIL_S3_BACKOFF_MAX_SECONDS", 5.0, min=0.0, max=300.0,
                                              doc="cap of one retry delay")
    s3_retry_deadline_seconds: float = env_field("VEIL_S3_RETRY_DEADLINE_SECONDS", 30.0, min=0.0,
                                                 max=3600.0, doc="no retry starts after this long")
    s3_timeout_seconds: float = env_field("VEIL_S3_TIMEOUT_SECONDS", 30.0, min=0.1, max=3600.0,
                                          doc="connect and read timeout of one S3 request")
    s3_part_size_bytes: int = env_field("VEIL_S3_PART_SIZE_BYTES", 16 * MIB, min=5 * MIB, max=5 * 1024 * MIB,
                                        doc="multipart part size; larger objects upload in parts")
    s3_spool_memory_bytes: int = env_field("VEIL_S3_SPOOL_MEMORY_BYTES", 8 * MIB, min=0,
                                           doc="uploads larger than this are staged in a temp file")

    def __post_init__(self) -> None:
        try:
            validate_bucket(self.bucket)
        except InvalidArgument as exc:
            raise ConfigError(f"VEIL_S3_BUCKET: {exc}") from None
        if self.backend != "s3":
            return
        for name, value in (("VEIL_S3_ENDPOINT", self.s3_endpoint),
                            ("VEIL_S3_ACCESS_KEY", self.s3_access_key),
                            ("VEIL_S3_SECRET_KEY", self.s3_secret_key)):
            if not value:
                raise ConfigError(f"{name} is required when VEIL_STORE_BACKEND=s3")
        if "://" in self.s3_endpoint or "/" in self.s3_endpoint:  # type: ignore[operator]
            raise ConfigError(
                f"VEIL_S3_ENDPOINT={self.s3_endpoint!r}: give host[:port] without scheme or path "
                "(VEIL_S3_SECURE selects https)"
            )


def open_store(config: StoreConfig) -> ObjectStore:
    """The configured backend. The S3 backend does no network I/O here: call `ensure_bucket()`
    at start-up to check the endpoint, the credentials and the bucket."""
    if config.backend == "s3":
        from veil.store.s3 import S3Store

        return S3Store(config)
    from veil.store.local import LocalStore

    return LocalStore(config.root, config.bucket)
