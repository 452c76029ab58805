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

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_ACTIVE: _ClassVar[SessionState]
    SESSION_STATE_ACCEPTED: _ClassVar[SessionState]
    SESSION_STATE_CLOSED: _ClassVar[SessionState]
    SESSION_STATE_FAILED: _ClassVar[SessionState]

class FeedbackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_KIND_UNSPECIFIED: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_MORE_PRIVACY: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_LESS_PRIVACY: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_ACCEPT: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_SET_EPSILON: _ClassVar[FeedbackKind]
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_ACTIVE: SessionState
SESSION_STATE_ACCEPTED: SessionState
SESSION_STATE_CLOSED: SessionState
SESSION_STATE_FAILED: SessionState
FEEDBACK_KIND_UNSPECIFIED: FeedbackKind
FEEDBACK_KIND_MORE_PRIVACY: FeedbackKind
FEEDBACK_KIND_LESS_PRIVACY: FeedbackKind
FEEDBACK_KIND_ACCEPT: FeedbackKind
FEEDBACK_KIND_SET_EPSILON: FeedbackKind

class UploadImageRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.UploadHeader
    chunk: _common_pb2.Chunk
    def __init__(self, header: _Optional[_Union[_common_pb2.UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("request_id", "subject_id", "image", "protect", "privacy", "candidates", "seed")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROTECT_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subject_id: str
    image: _common_pb2.ObjectRef
    protect: _containers.RepeatedScalarFieldContainer[str]
    privacy: _common_pb2.PrivacySetting
    candidates: int
    seed: int
    def __init__(self, request_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., protect: _Optional[_Iterable[str]] = ..., privacy: _Optional[_Union[_common_pb2.PrivacySetting, _Mapping]] = ..., candidates: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class SessionCandidate(_message.Message):
    __slots__ = ("index", "image", "receipt", "faces")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: _common_pb2.ImageRef
    receipt: _common_pb2.Receipt
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRelease]
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., receipt: _Optional[_Union[_common_pb2.Receipt, _Mapping]] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.FaceRelease, _Mapping]]] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("number", "attribute_epsilon", "identity_epsilon", "rho", "level", "candidates", "feedback", "created_at", "refused")
    class AttributeEpsilonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_EPSILON_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_EPSILON_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    number: int
    attribute_epsilon: _containers.ScalarMap[str, float]
    identity_epsilon: float
    rho: float
    level: int
    candidates: _containers.RepeatedCompositeFieldContainer[SessionCandidate]
    feedback: FeedbackKind
    created_at: _timestamp_pb2.Timestamp
    refused: _containers.RepeatedCompositeFieldContainer[RefusedCandidate]
    def __init__(self, number: _Optional[int] = ..., attribute_epsilon: _Optional[_Mapping[str, float]] = ..., identity_epsilon: _Optional[float] = ..., rho: _Optional[float] = ..., level: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[SessionCandidate, _Mapping]]] = ..., feedback: _Optional[_Union[FeedbackKind, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refused: _Optional[_Iterable[_Union[RefusedCandidate, _Mapping]]] = ...) -> None: ...

class RefusedCandidate(_message.Message):
    __slots__ = ("index", "reason", "faces")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRelease]
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.FaceRelease, _Mapping]]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("image", "receipt", "charged_epsilon", "ledger", "unlearning_request_ids", "faces")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    CHARGED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    UNLEARNING_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    receipt: _common_pb2.Receipt
    charged_epsilon: float
    ledger: LedgerSummary
    unlearning_request_ids: _containers.RepeatedScalarFieldContainer[str]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRelease]
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., receipt: _Optional[_Union[_common_pb2.Receipt, _Mapping]] = ..., charged_epsilon: _Optional[float] = ..., ledger: _Optional[_Union[LedgerSummary, _Mapping]] = ..., unlearning_request_ids: _Optional[_Iterable[str]] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.FaceRelease, _Mapping]]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "subject_id", "state", "protect", "original", "latest_round", "round_count", "release", "created_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROTECT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    LATEST_ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUND_COUNT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    subject_id: str
    state: SessionState
    protect: _containers.RepeatedScalarFieldContainer[str]
    original: _common_pb2.ImageRef
    latest_round: Round
    round_count: int
    release: Release
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., protect: _Optional[_Iterable[str]] = ..., original: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., latest_round: _Optional[_Union[Round, _Mapping]] = ..., round_count: _Optional[int] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("subject_id", "page_size", "page_token")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    page_size: int
    page_token: str
    def __init__(self, subject_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamRoundsRequest(_message.Message):
    __slots__ = ("session_id", "from_round")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ROUND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    from_round: int
    def __init__(self, session_id: _Optional[str] = ..., from_round: _Optional[int] = ...) -> None: ...

class RoundEvent(_message.Message):
    __slots__ = ("progress", "round", "session_ended")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    round: Round
    session_ended: Session
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., round: _Optional[_Union[Round, _Mapping]] = ..., session_ended: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "session_id", "kind", "candidate", "epsilon")
    class EpsilonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    kind: FeedbackKind
    candidate: int
    epsilon: _containers.ScalarMap[str, float]
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., kind: _Optional[_Union[FeedbackKind, str]] = ..., candidate: _Optional[int] = ..., epsilon: _Optional[_Mapping[str, float]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("session", "round", "release")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    session: Session
    round: Round
    release: Release
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., round: _Optional[_Union[Round, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class GetLedgerRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class LedgerSummary(_message.Message):
    __slots__ = ("composed_epsilon", "sum_epsilon", "delta", "cap", "remaining")
    COMPOSED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    SUM_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CAP_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    composed_epsilon: float
    sum_epsilon: float
    delta: float
    cap: float
    remaining: float
    def __init__(self, composed_epsilon: _Optional[float] = ..., sum_epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., cap: _Optional[float] = ..., remaining: _Optional[float] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("entry_id", "session_id", "receipt_id", "epsilon", "events_json", "created_at")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    session_id: str
    receipt_id: str
    epsilon: float
    events_json: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, entry_id: _Optional[str] = ..., session_id: _Optional[str] = ..., receipt_id: _Optional[str] = ..., epsilon: _Optional[float] = ..., events_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Ledger(_message.Message):
    __slots__ = ("subject_id", "summary", "entries")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    summary: LedgerSummary
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, subject_id: _Optional[str] = ..., summary: _Optional[_Union[LedgerSummary, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: _common_pb2.ObjectRef
    def __init__(self, object: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("request_id", "session_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class DeleteUploadRequest(_message.Message):
    __slots__ = ("request_id", "image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: _common_pb2.ObjectRef
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ...) -> None: ...

class DeleteUploadResponse(_message.Message):
    __slots__ = ("image", "sessions")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ObjectRef
    sessions: int
    def __init__(self, image: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., sessions: _Optional[int] = ...) -> None: ...
