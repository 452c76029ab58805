"""The anonymizer's settings (environment variables, validated at start-up; see deploy/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

from veil.config import env_field
from veil.diffusion import DEFAULT_MODEL_DIR
from veil.diffusion.loading import ModelLocation
from veil.diffusion.verify import MAX_TRIES
from veil.errors import ConfigError, InvalidArgument
from veil.faces.photo import DEFAULT_MAX_SIDE
from veil.faces.pipeline import DEFAULT_MIN_FACE
from veil.rpc.config import MIB, EnvLoadable

GRPC_ADDRESS = "[::]:50051"
METRICS_PORT = 9101


@dataclass(frozen=True)
class AnonymizerConfig(EnvLoadable):
    model_uri: str = env_field("VEIL_MODEL_URI", str(DEFAULT_MODEL_DIR),
                               doc="the model: a local folder, store://<prefix> or s3://<bucket>/<prefix> "
                                   "(pulled from the object store at start-up)")
    model_cache_dir: str = env_field("VEIL_MODEL_CACHE_DIR", "/tmp/veil-models",
                                     doc="where pulled models and the ONNX export are cached")
    runtime: str = env_field("VEIL_ANONYMIZER_RUNTIME", "torch", choices=("torch", "onnxruntime"),
                             doc="denoiser runtime: torch or onnxruntime")
    device: str = env_field("VEIL_ANONYMIZER_DEVICE", "cpu", choices=("cpu", "cuda"), doc="cpu or cuda")
    batch_max_size: int = env_field("VEIL_BATCH_MAX_SIZE", 16, min=1, max=4096,
                                    doc="largest micro-batch, in rows (images x candidates) decoded together; "
                                        "a larger request runs alone")
    batch_max_wait_seconds: float = env_field("VEIL_BATCH_MAX_WAIT_SECONDS", 0.01, min=0.0, max=60.0,
                                              doc="how long a batch waits for more requests to fill")
    queue_max_size: int = env_field("VEIL_QUEUE_MAX_SIZE", 256, min=1, max=1_000_000,
                                    doc="queued requests beyond this are refused (RESOURCE_EXHAUSTED)")
    sampling_steps: int | None = env_field("VEIL_SAMPLING_STEPS", None, min=1, max=1000,
                                           doc="DDIM steps (default: the model card's)")
    decode_tries: int = env_field("VEIL_DECODE_TRIES", 3, min=0, max=MAX_TRIES,
                                  doc="verified edits: the most decodes of a candidate until the attribute classifier "
                                      "reads the values randomized response released (else the candidate is refused); "
                                      "0 offers candidates unverified")
    max_images_per_request: int = env_field("VEIL_MAX_IMAGES_PER_REQUEST", 16, min=1, max=1024,
                                            doc="images one Anonymize call may name or upload")
    max_image_bytes: int = env_field("VEIL_MAX_IMAGE_BYTES", 32 * MIB, min=1024, max=1024 * MIB,
                                     doc="largest input image file, stored or uploaded")
    max_photo_side: int = env_field("VEIL_MAX_PHOTO_SIDE", DEFAULT_MAX_SIDE, min=16, max=16384,
                                    doc="longest side of an input photo, in pixels (larger ones are refused "
                                        "from their header)")
    face_detector: str = env_field("VEIL_FACE_DETECTOR", "hog", choices=("hog", "mmod"),
                                   doc="face detector: hog (dlib's HOG, CPU) or mmod (dlib's CNN, for GPU nodes)")
    face_upsample: int = env_field("VEIL_FACE_UPSAMPLE", 1, min=0, max=2,
                                   doc="detector upsamplings: each finds faces half as small at 4x the cost")
    min_face: int = env_field("VEIL_MIN_FACE_PX", DEFAULT_MIN_FACE, min=1, max=4096,
                              doc="faces whose box is smaller (shorter side, pixels) are obscured, not re-synthesized")

    def __post_init__(self) -> None:
        try:
            ModelLocation.parse(self.model_uri)
        except InvalidArgument as exc:
            raise ConfigError(f"VEIL_MODEL_URI: {exc}") from None
