import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from veil.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UnlearnMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNLEARN_METHOD_UNSPECIFIED: _ClassVar[UnlearnMethod]
    UNLEARN_METHOD_FIRST_ORDER: _ClassVar[UnlearnMethod]
    UNLEARN_METHOD_SECOND_ORDER: _ClassVar[UnlearnMethod]
    UNLEARN_METHOD_FINE_TUNE: _ClassVar[UnlearnMethod]
    UNLEARN_METHOD_RETRAIN: _ClassVar[UnlearnMethod]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
UNLEARN_METHOD_UNSPECIFIED: UnlearnMethod
UNLEARN_METHOD_FIRST_ORDER: UnlearnMethod
UNLEARN_METHOD_SECOND_ORDER: UnlearnMethod
UNLEARN_METHOD_FINE_TUNE: UnlearnMethod
UNLEARN_METHOD_RETRAIN: UnlearnMethod
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class ModelVersion(_message.Message):
    __slots__ = ("model", "version", "parent_version", "checkpoint", "manifest", "manifest_sha256", "card_json", "created_at", "lineage")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    parent_version: str
    checkpoint: _common_pb2.ObjectRef
    manifest: _common_pb2.ObjectRef
    manifest_sha256: str
    card_json: str
    created_at: _timestamp_pb2.Timestamp
    lineage: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., parent_version: _Optional[str] = ..., checkpoint: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., manifest: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., manifest_sha256: _Optional[str] = ..., card_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lineage: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ListDependentModelsRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDependentModelsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("request_id", "model", "manifest", "seed", "epochs")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    manifest: _common_pb2.ObjectRef
    seed: int
    epochs: int
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., manifest: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., seed: _Optional[int] = ..., epochs: _Optional[int] = ...) -> None: ...

class ReplacementPair(_message.Message):
    __slots__ = ("original", "replacement", "session_id")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    original: _common_pb2.ObjectRef
    replacement: _common_pb2.ObjectRef
    session_id: str
    def __init__(self, original: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., replacement: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class UnlearnParams(_message.Message):
    __slots__ = ("tau", "solver", "damping", "scale", "max_iterations", "last_k_layers", "epochs")
    TAU_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    DAMPING_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_K_LAYERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    tau: float
    solver: str
    damping: float
    scale: float
    max_iterations: int
    last_k_layers: int
    epochs: int
    def __init__(self, tau: _Optional[float] = ..., solver: _Optional[str] = ..., damping: _Optional[float] = ..., scale: _Optional[float] = ..., max_iterations: _Optional[int] = ..., last_k_layers: _Optional[int] = ..., epochs: _Optional[int] = ...) -> None: ...

class UnlearnRequest(_message.Message):
    __slots__ = ("request_id", "model", "version", "pairs", "method", "params")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    version: str
    pairs: _containers.RepeatedCompositeFieldContainer[ReplacementPair]
    method: UnlearnMethod
    params: UnlearnParams
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., pairs: _Optional[_Iterable[_Union[ReplacementPair, _Mapping]]] = ..., method: _Optional[_Union[UnlearnMethod, str]] = ..., params: _Optional[_Union[UnlearnParams, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "kind", "state", "progress", "model", "base_version", "result_version", "error", "session_ids", "created_at", "updated_at", "attempts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    state: JobState
    progress: _common_pb2.Progress
    model: str
    base_version: str
    result_version: str
    error: str
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    attempts: int
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., model: _Optional[str] = ..., base_version: _Optional[str] = ..., result_version: _Optional[str] = ..., error: _Optional[str] = ..., session_ids: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model", "version", "reference_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    reference_version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., reference_version: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("metrics",)
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...
