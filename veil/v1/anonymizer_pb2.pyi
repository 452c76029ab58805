from veil.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttributeInfo(_message.Message):
    __slots__ = ("name", "mechanisms", "implied_by_protection")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    IMPLIED_BY_PROTECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    mechanisms: _containers.RepeatedScalarFieldContainer[_common_pb2.Mechanism]
    implied_by_protection: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., mechanisms: _Optional[_Iterable[_Union[_common_pb2.Mechanism, str]]] = ..., implied_by_protection: _Optional[_Iterable[str]] = ...) -> None: ...

class PrivacyLevel(_message.Message):
    __slots__ = ("level", "attribute_epsilon", "identity_epsilon", "rho", "image_level_guarantee")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_EPSILON_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_EPSILON_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_LEVEL_GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    level: int
    attribute_epsilon: float
    identity_epsilon: float
    rho: float
    image_level_guarantee: bool
    def __init__(self, level: _Optional[int] = ..., attribute_epsilon: _Optional[float] = ..., identity_epsilon: _Optional[float] = ..., rho: _Optional[float] = ..., image_level_guarantee: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_version", "image_size", "attributes", "levels", "default_level", "identity_delta", "max_candidates", "runtime", "device", "max_images_per_request", "max_image_bytes", "sampling_steps", "decode_tries")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_STEPS_FIELD_NUMBER: _ClassVar[int]
    DECODE_TRIES_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    image_size: int
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeInfo]
    levels: _containers.RepeatedCompositeFieldContainer[PrivacyLevel]
    default_level: int
    identity_delta: float
    max_candidates: int
    runtime: str
    device: str
    max_images_per_request: int
    max_image_bytes: int
    sampling_steps: int
    decode_tries: int
    def __init__(self, model_version: _Optional[str] = ..., image_size: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[AttributeInfo, _Mapping]]] = ..., levels: _Optional[_Iterable[_Union[PrivacyLevel, _Mapping]]] = ..., default_level: _Optional[int] = ..., identity_delta: _Optional[float] = ..., max_candidates: _Optional[int] = ..., runtime: _Optional[str] = ..., device: _Optional[str] = ..., max_images_per_request: _Optional[int] = ..., max_image_bytes: _Optional[int] = ..., sampling_steps: _Optional[int] = ..., decode_tries: _Optional[int] = ...) -> None: ...

class AnonymizeRequest(_message.Message):
    __slots__ = ("request_id", "images", "protect", "privacy", "candidates", "seed", "output_prefix", "subject_id", "faces")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PROTECT_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.ObjectRef]
    protect: _containers.RepeatedScalarFieldContainer[str]
    privacy: _common_pb2.PrivacySetting
    candidates: int
    seed: int
    output_prefix: str
    subject_id: str
    faces: _containers.RepeatedCompositeFieldContainer[ImageFaces]
    def __init__(self, request_id: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_common_pb2.ObjectRef, _Mapping]]] = ..., protect: _Optional[_Iterable[str]] = ..., privacy: _Optional[_Union[_common_pb2.PrivacySetting, _Mapping]] = ..., candidates: _Optional[int] = ..., seed: _Optional[int] = ..., output_prefix: _Optional[str] = ..., subject_id: _Optional[str] = ..., faces: _Optional[_Iterable[_Union[ImageFaces, _Mapping]]] = ...) -> None: ...

class ImageFaces(_message.Message):
    __slots__ = ("use_boxes", "boxes", "keep_indices", "keep_boxes")
    USE_BOXES_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    KEEP_INDICES_FIELD_NUMBER: _ClassVar[int]
    KEEP_BOXES_FIELD_NUMBER: _ClassVar[int]
    use_boxes: bool
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceBox]
    keep_indices: _containers.RepeatedScalarFieldContainer[int]
    keep_boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceBox]
    def __init__(self, use_boxes: _Optional[bool] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.FaceBox, _Mapping]]] = ..., keep_indices: _Optional[_Iterable[int]] = ..., keep_boxes: _Optional[_Iterable[_Union[_common_pb2.FaceBox, _Mapping]]] = ...) -> None: ...

class AnonymizeUploadRequest(_message.Message):
    __slots__ = ("request", "image", "chunk")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    request: AnonymizeRequest
    image: _common_pb2.UploadHeader
    chunk: _common_pb2.Chunk
    def __init__(self, request: _Optional[_Union[AnonymizeRequest, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("image_index", "candidate_index", "image", "receipt", "input", "receipt_object", "faces", "refusal")
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    image_index: int
    candidate_index: int
    image: _common_pb2.ImageRef
    receipt: _common_pb2.Receipt
    input: _common_pb2.ObjectRef
    receipt_object: _common_pb2.ObjectRef
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRelease]
    refusal: str
    def __init__(self, image_index: _Optional[int] = ..., candidate_index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., receipt: _Optional[_Union[_common_pb2.Receipt, _Mapping]] = ..., input: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., receipt_object: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.FaceRelease, _Mapping]]] = ..., refusal: _Optional[str] = ...) -> None: ...

class AnonymizeEvent(_message.Message):
    __slots__ = ("progress", "candidate")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    candidate: Candidate
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., candidate: _Optional[_Union[Candidate, _Mapping]] = ...) -> None: ...
