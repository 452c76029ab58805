"""veil.v1 gateway messages <-> the workflow's and services.gateway.state' records (the only place that
builds the messages)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.json_format import ParseDict

from services.gateway.workflow import (Answer, Answered, NewSession, Release, RoundEvent,
                                       SessionView, UrlFor)
from veil.errors import InvalidArgument
from veil.ledger import events_to_json
from veil.rpc.convert import timestamp
from services.gateway.state import (
    FeedbackKind,
    LedgerEntryRecord,
    LedgerSummary,
    RoundRecord,
    SessionState,
    StoredObject,
)
from veil.store import ObjectInfo, from_object_ref, object_ref
from veil.store.keys import validate_sha256
from veil.v1 import common_pb2, gateway_pb2

FEEDBACK_FROM_PROTO = {
    gateway_pb2.FEEDBACK_KIND_MORE_PRIVACY: FeedbackKind.MORE_PRIVACY,
    gateway_pb2.FEEDBACK_KIND_LESS_PRIVACY: FeedbackKind.LESS_PRIVACY,
    gateway_pb2.FEEDBACK_KIND_ACCEPT: FeedbackKind.ACCEPT,
    gateway_pb2.FEEDBACK_KIND_SET_EPSILON: FeedbackKind.SET_EPSILON,
}
FEEDBACK_TO_PROTO = {v: k for k, v in FEEDBACK_FROM_PROTO.items()}
STATE_TO_PROTO = {
    SessionState.ACTIVE: gateway_pb2.SESSION_STATE_ACTIVE,
    SessionState.ACCEPTED: gateway_pb2.SESSION_STATE_ACCEPTED,
    SessionState.CLOSED: gateway_pb2.SESSION_STATE_CLOSED,
    SessionState.FAILED: gateway_pb2.SESSION_STATE_FAILED,
}


def image_ref(obj: StoredObject, url_for: UrlFor) -> common_pb2.ImageRef:
    return common_pb2.ImageRef(object=object_ref(obj), width=obj.width, height=obj.height,
                               url=url_for(obj))


def receipt(data: Mapping[str, Any]) -> common_pb2.Receipt:
    """The anonymizer's receipt as stored with the candidate (fields a newer anonymizer added
    are kept out rather than failing the read)."""
    return ParseDict(dict(data), common_pb2.Receipt(), ignore_unknown_fields=True)


def faces(data: Sequence[Mapping[str, Any]]) -> list[common_pb2.FaceRelease]:
    """Each face of a candidate as stored (unknown fields kept out, as for `receipt`)."""
    return [ParseDict(dict(face), common_pb2.FaceRelease(), ignore_unknown_fields=True) for face in data]


def round_message(record: RoundRecord, url_for: UrlFor) -> gateway_pb2.Round:
    settings = record.settings
    return gateway_pb2.Round(
        number=record.number, attribute_epsilon=dict(settings.attribute_epsilon),
        identity_epsilon=settings.identity_epsilon or 0.0, rho=settings.rho, level=settings.level,
        candidates=[gateway_pb2.SessionCandidate(index=c.index, image=image_ref(c.image, url_for),
                                                 receipt=receipt(c.receipt), faces=faces(c.faces))
                    for c in record.candidates],
        refused=[gateway_pb2.RefusedCandidate(index=r.index, reason=r.reason, faces=faces(r.faces))
                 for r in record.refused],
        feedback=FEEDBACK_TO_PROTO.get(record.feedback, gateway_pb2.FEEDBACK_KIND_UNSPECIFIED),
        created_at=timestamp(record.created_at))


def ledger_summary(summary: LedgerSummary) -> gateway_pb2.LedgerSummary:
    return gateway_pb2.LedgerSummary(composed_epsilon=summary.composed_epsilon,
                                     sum_epsilon=summary.sum_epsilon, delta=summary.delta,
                                     cap=summary.cap, remaining=summary.remaining)


def release_message(release: Release, url_for: UrlFor) -> gateway_pb2.Release:
    result = release.result
    candidate = release.accepted_round.candidate(result.release.candidate_index)
    return gateway_pb2.Release(
        image=image_ref(result.release.target, url_for), receipt=receipt(candidate.receipt),
        charged_epsilon=result.charge.entry.epsilon, ledger=ledger_summary(result.charge.summary),
        unlearning_request_ids=list(result.unlearning_request_ids), faces=faces(candidate.faces))


def session_message(view: SessionView, url_for: UrlFor) -> gateway_pb2.Session:
    session = view.session
    message = gateway_pb2.Session(
        session_id=session.session_id, subject_id=session.subject_id,
        state=STATE_TO_PROTO[session.state], protect=list(session.protect),
        original=image_ref(session.original, url_for), round_count=session.round_count,
        created_at=timestamp(session.created_at))
    if session.original_deleted_at is not None:
        message.original.url = ""  # retention deleted it
    if view.latest_round is not None:
        message.latest_round.CopyFrom(round_message(view.latest_round, url_for))
    if view.release is not None:
        message.release.CopyFrom(release_message(view.release, url_for))
    return message


def feedback_response(answered: Answered, url_for: UrlFor) -> gateway_pb2.FeedbackResponse:
    """The next round, or (ACCEPT) the release."""
    response = gateway_pb2.FeedbackResponse(session=session_message(answered.view, url_for))
    if answered.next_round is not None:
        response.round.CopyFrom(round_message(answered.next_round, url_for))
    else:
        response.release.CopyFrom(response.session.release)
    return response


def round_event(event: RoundEvent, url_for: UrlFor) -> gateway_pb2.RoundEvent:
    if isinstance(event, RoundRecord):
        return gateway_pb2.RoundEvent(round=round_message(event, url_for))
    if isinstance(event, common_pb2.Progress):
        return gateway_pb2.RoundEvent(progress=event)
    return gateway_pb2.RoundEvent(session_ended=session_message(event, url_for))


def new_session(request: gateway_pb2.CreateSessionRequest, bucket: str) -> NewSession:
    has_image = request.HasField("image") and bool(request.image.key)
    return NewSession(
        subject_id=request.subject_id,
        image=from_object_ref(request.image, bucket) if has_image else None,
        protect=tuple(request.protect),
        privacy=request.privacy if request.HasField("privacy") else None,
        candidates=request.candidates, seed=request.seed, request_id=request.request_id)


def upload_ref(request: gateway_pb2.DeleteUploadRequest, bucket: str) -> ObjectInfo:
    """The upload a DeleteUpload names: its ref, or only its sha256 (an empty key)."""
    if request.image.key:
        return from_object_ref(request.image, bucket)
    if not request.image.sha256:
        raise InvalidArgument("no upload named: give its key or its sha256")
    return ObjectInfo(key="", size=0, sha256=validate_sha256(request.image.sha256),
                      content_type="")


def delete_upload_response(image: StoredObject, sessions: int) -> gateway_pb2.DeleteUploadResponse:
    return gateway_pb2.DeleteUploadResponse(image=object_ref(image), sessions=sessions)


def answer(request: gateway_pb2.FeedbackRequest) -> Answer:
    kind = FEEDBACK_FROM_PROTO.get(request.kind)
    if kind is None:
        raise InvalidArgument("feedback kind must be MORE_PRIVACY, LESS_PRIVACY, ACCEPT or "
                              "SET_EPSILON")
    return Answer(session_id=request.session_id, kind=kind, candidate=request.candidate,
                  epsilon=dict(request.epsilon) or None, request_id=request.request_id)


def ledger_message(subject_id: str, summary: LedgerSummary,
                   entries: Sequence[LedgerEntryRecord]) -> gateway_pb2.Ledger:
    return gateway_pb2.Ledger(
        subject_id=subject_id, summary=ledger_summary(summary),
        entries=[gateway_pb2.LedgerEntry(entry_id=e.entry_id, session_id=e.session_id or "",
                                         receipt_id=e.receipt_id, epsilon=e.epsilon,
                                         events_json=json.dumps(events_to_json(e.events)),
                                         created_at=timestamp(e.created_at))
                 for e in entries])
