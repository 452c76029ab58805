import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mechanism(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MECHANISM_UNSPECIFIED: _ClassVar[Mechanism]
    MECHANISM_RANDOMIZED_RESPONSE: _ClassVar[Mechanism]
    MECHANISM_LAPLACE: _ClassVar[Mechanism]
    MECHANISM_GAUSSIAN: _ClassVar[Mechanism]

class FaceAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACE_ACTION_UNSPECIFIED: _ClassVar[FaceAction]
    FACE_ACTION_ANONYMIZED: _ClassVar[FaceAction]
    FACE_ACTION_KEPT: _ClassVar[FaceAction]
    FACE_ACTION_OBSCURED: _ClassVar[FaceAction]
MECHANISM_UNSPECIFIED: Mechanism
MECHANISM_RANDOMIZED_RESPONSE: Mechanism
MECHANISM_LAPLACE: Mechanism
MECHANISM_GAUSSIAN: Mechanism
FACE_ACTION_UNSPECIFIED: FaceAction
FACE_ACTION_ANONYMIZED: FaceAction
FACE_ACTION_KEPT: FaceAction
FACE_ACTION_OBSCURED: FaceAction

class ObjectRef(_message.Message):
    __slots__ = ("bucket", "key", "sha256", "size", "content_type")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    sha256: str
    size: int
    content_type: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("object", "width", "height", "url")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    object: ObjectRef
    width: int
    height: int
    url: str
    def __init__(self, object: _Optional[_Union[ObjectRef, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("request_id", "content_type", "size", "sha256", "subject_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    content_type: str
    size: int
    sha256: str
    subject_id: str
    def __init__(self, request_id: _Optional[str] = ..., content_type: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., subject_id: _Optional[str] = ...) -> None: ...

class PrivacySetting(_message.Message):
    __slots__ = ("level", "explicit")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_FIELD_NUMBER: _ClassVar[int]
    level: int
    explicit: ExplicitBudget
    def __init__(self, level: _Optional[int] = ..., explicit: _Optional[_Union[ExplicitBudget, _Mapping]] = ...) -> None: ...

class ExplicitBudget(_message.Message):
    __slots__ = ("attribute_epsilon", "attribute_mechanism", "identity_epsilon", "rho")
    class AttributeEpsilonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ATTRIBUTE_EPSILON_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_MECHANISM_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_EPSILON_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    attribute_epsilon: _containers.ScalarMap[str, float]
    attribute_mechanism: Mechanism
    identity_epsilon: float
    rho: float
    def __init__(self, attribute_epsilon: _Optional[_Mapping[str, float]] = ..., attribute_mechanism: _Optional[_Union[Mechanism, str]] = ..., identity_epsilon: _Optional[float] = ..., rho: _Optional[float] = ...) -> None: ...

class AttributeRelease(_message.Message):
    __slots__ = ("attribute", "mechanism", "epsilon", "released_value")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    RELEASED_VALUE_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    mechanism: Mechanism
    epsilon: float
    released_value: float
    def __init__(self, attribute: _Optional[str] = ..., mechanism: _Optional[_Union[Mechanism, str]] = ..., epsilon: _Optional[float] = ..., released_value: _Optional[float] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("receipt_id", "attributes", "identity_epsilon", "identity_delta", "identity_sigma", "rho", "level", "seed", "model_version", "input_sha256", "created_at", "identity_noise_multiplier", "resampled_attributes", "candidate", "image_level_guarantee", "decode_tries")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_EPSILON_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_DELTA_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_SIGMA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    RESAMPLED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_LEVEL_GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    DECODE_TRIES_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeRelease]
    identity_epsilon: float
    identity_delta: float
    identity_sigma: float
    rho: float
    level: int
    seed: int
    model_version: str
    input_sha256: str
    created_at: _timestamp_pb2.Timestamp
    identity_noise_multiplier: float
    resampled_attributes: _containers.RepeatedScalarFieldContainer[str]
    candidate: int
    image_level_guarantee: bool
    decode_tries: int
    def __init__(self, receipt_id: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeRelease, _Mapping]]] = ..., identity_epsilon: _Optional[float] = ..., identity_delta: _Optional[float] = ..., identity_sigma: _Optional[float] = ..., rho: _Optional[float] = ..., level: _Optional[int] = ..., seed: _Optional[int] = ..., model_version: _Optional[str] = ..., input_sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identity_noise_multiplier: _Optional[float] = ..., resampled_attributes: _Optional[_Iterable[str]] = ..., candidate: _Optional[int] = ..., image_level_guarantee: _Optional[bool] = ..., decode_tries: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "step", "total_steps", "image_index", "image_count", "message", "batch_id")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    stage: str
    step: int
    total_steps: int
    image_index: int
    image_count: int
    message: str
    batch_id: str
    def __init__(self, stage: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., image_index: _Optional[int] = ..., image_count: _Optional[int] = ..., message: _Optional[str] = ..., batch_id: _Optional[str] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("left", "top", "right", "bottom")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    left: int
    top: int
    right: int
    bottom: int
    def __init__(self, left: _Optional[int] = ..., top: _Optional[int] = ..., right: _Optional[int] = ..., bottom: _Optional[int] = ...) -> None: ...

class FaceRelease(_message.Message):
    __slots__ = ("box", "score", "action", "receipt", "region", "unverified_attributes")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    UNVERIFIED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    box: FaceBox
    score: float
    action: FaceAction
    receipt: Receipt
    region: FaceBox
    unverified_attributes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, box: _Optional[_Union[FaceBox, _Mapping]] = ..., score: _Optional[float] = ..., action: _Optional[_Union[FaceAction, str]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., region: _Optional[_Union[FaceBox, _Mapping]] = ..., unverified_attributes: _Optional[_Iterable[str]] = ...) -> None: ...
