"""veil.sessions records -> veil.v1 gateway messages (the only place that builds them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp

from veil.ledger import events_to_json
from veil.sessions import (
    AcceptResult,
    FeedbackKind,
    LedgerEntryRecord,
    LedgerSummary,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
)
from veil.v1 import common_pb2, gateway_pb2

UrlFor = Callable[[StoredObject], str]

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


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def object_ref(obj: StoredObject) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=obj.bucket, key=obj.key, sha256=obj.sha256, size=obj.size,
                                content_type=obj.content_type)


def image_ref(obj: StoredObject, url_for: UrlFor) -> common_pb2.ImageRef:
    return common_pb2.ImageRef(object=object_ref(obj), width=obj.width, height=obj.height,
                               url=url_for(obj))


def receipt(data: Mapping[str, Any]) -> common_pb2.Receipt:
    """The anonymizer's receipt as stored with the candidate (fields a newer anonymizer added
    are kept out rather than failing the read)."""
    return ParseDict(dict(data), common_pb2.Receipt(), ignore_unknown_fields=True)


def round_message(record: RoundRecord, url_for: UrlFor) -> gateway_pb2.Round:
    settings = record.settings
    return gateway_pb2.Round(
        number=record.number, attribute_epsilon=dict(settings.attribute_epsilon),
        identity_epsilon=settings.identity_epsilon or 0.0, rho=settings.rho, level=settings.level,
        candidates=[gateway_pb2.SessionCandidate(index=c.index, image=image_ref(c.image, url_for),
                                                 receipt=receipt(c.receipt))
                    for c in record.candidates],
        feedback=FEEDBACK_TO_PROTO.get(record.feedback, gateway_pb2.FEEDBACK_KIND_UNSPECIFIED),
        created_at=timestamp(record.created_at))


def ledger_summary(summary: LedgerSummary) -> gateway_pb2.LedgerSummary:
    return gateway_pb2.LedgerSummary(composed_epsilon=summary.composed_epsilon,
                                     sum_epsilon=summary.sum_epsilon, delta=summary.delta,
                                     cap=summary.cap, remaining=summary.remaining)


def release_message(result: AcceptResult, accepted_round: RoundRecord,
                    url_for: UrlFor) -> gateway_pb2.Release:
    release = result.release
    candidate = accepted_round.candidates[release.candidate_index]
    return gateway_pb2.Release(
        image=image_ref(release.target, url_for), receipt=receipt(candidate.receipt),
        charged_epsilon=result.charge.entry.epsilon, ledger=ledger_summary(result.charge.summary),
        unlearning_request_ids=list(result.unlearning_request_ids))


def session_message(session: SessionRecord, latest: RoundRecord | None,
                    release: gateway_pb2.Release | None, url_for: UrlFor) -> gateway_pb2.Session:
    message = gateway_pb2.Session(
        session_id=session.session_id, subject_id=session.subject_id,
        state=STATE_TO_PROTO[session.state], protect=list(session.protect),
        original=image_ref(session.original, url_for), round_count=session.round_count,
        created_at=timestamp(session.created_at))
    if session.original_deleted_at is not None:
        message.original.url = ""  # retention deleted it
    if latest is not None:
        message.latest_round.CopyFrom(round_message(latest, url_for))
    if release is not None:
        message.release.CopyFrom(release)
    return message


def ledger_message(subject_id: str, summary: LedgerSummary,
                   entries: Sequence[LedgerEntryRecord]) -> gateway_pb2.Ledger:
    return gateway_pb2.Ledger(
        subject_id=subject_id, summary=ledger_summary(summary),
        entries=[gateway_pb2.LedgerEntry(entry_id=e.entry_id, session_id=e.session_id or "",
                                         receipt_id=e.receipt_id, epsilon=e.epsilon,
                                         events_json=json.dumps(events_to_json(e.events)),
                                         created_at=timestamp(e.created_at))
                 for e in entries])
