"""The gateway's state: sessions and rounds, releases and the privacy ledger, idempotency keys,
the audit log, the unlearning queue and retention, all in SQL (PostgreSQL or SQLite), plus the
feedback controller. Plain Python: the gateway servicer is a thin layer on `GatewayState`.

How a servicer drives it (`state = GatewayState.from_env()`; every call names the tenant the
caller's token maps to, and raises veil.errors types that map to gRPC codes):

- CreateSession: `state.sessions.create_session(...)`, generate round 1 with the anonymizer,
  `state.sessions.add_round(...)`; on an anonymizer failure `fail_session`.
- MORE / LESS / SET_EPSILON: `rounds = state.sessions.rounds(...)`,
  `nxt = plan_next_round(rounds, kind, state.controller, requested)`,
  `state.sessions.record_feedback(..., next_settings=nxt)`, generate, `add_round(settings=nxt)`.
  On restart, a latest round with feedback and no successor is regenerated from its
  `next_settings`.
- ACCEPT k: `result = state.releases.accept(...)` (charges the ledger or raises
  FailedPrecondition before anything exists), then copy `result.release.source` to
  `result.release.target` in the object store, then `state.releases.mark_published(...)`.
  A recovery loop finishes `state.releases.pending_releases(older_than=...)` the same way.
- Request ids: `state.idempotency.claim / complete / abandon` (see services.gateway.state.idempotency).
  The work is idempotent by request id too: `create_session(request_id=...)` and
  `session_for_request`, `record_feedback(request_id=...)` and `feedback_round`, and `accept`.
- Rounds in flight: `state.round_leases.take / renew / drop` (one replica generates a round;
  a dead one's lease expires). Rounds nobody generates (a replica died):
  `state.sessions.sessions_awaiting_round(...)`.
- GetSession of an accepted session: `state.releases.accepted(...)`.
- Unlearning dispatcher: `state.unlearning.models_waiting` ((tenant, model) pairs) /
  `claim_batch / mark_submitted / mark_done / mark_failed`, resuming `batches(BATCHED |
  SUBMITTED)` after a restart.
- Retention: `state.retention.originals_due()`, delete each object, `mark_original_deleted`.
- GetLedger: `state.ledger.summary(...)` and `state.ledger.entries(...)`.
- UploadImage and CreateSession: `state.upload_subjects.bind(...)` ties the image's bytes to one
  subject (FailedPrecondition for another).
"""

from services.gateway.state.audit import AuditLog, AuditRecord
from services.gateway.state.controller import (
    ControllerConfig,
    Step,
    next_budget,
    plan_next_round,
    validate_budget,
)
from services.gateway.state.idempotency import Claim, IdempotencyConfig, IdempotencyStore, Replay
from services.gateway.state.ledger_store import LedgerStore
from services.gateway.state.models import (
    AcceptResult,
    Candidate,
    Charge,
    FeedbackKind,
    LedgerEntryRecord,
    LedgerSummary,
    RefusedCandidate,
    ReleaseRecord,
    ReleaseState,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
)
from services.gateway.state.releases import ReleaseStore
from services.gateway.state.state import SERVICE, GatewayState
from services.gateway.state.store import SessionStore
from services.gateway.state.unlearning import (
    DueOriginal,
    Retention,
    RetentionConfig,
    RetentionPolicy,
    UnlearningBatch,
    UnlearningQueue,
    UnlearningRequest,
    UnlearningStatus,
)

__all__ = [
    "SERVICE", "AcceptResult", "AuditLog", "AuditRecord", "Candidate", "Charge", "Claim",
    "ControllerConfig", "DueOriginal", "FeedbackKind", "GatewayState", "IdempotencyConfig",
    "IdempotencyStore", "LedgerEntryRecord", "LedgerStore", "LedgerSummary", "RefusedCandidate",
    "ReleaseRecord", "ReleaseState", "ReleaseStore", "Replay", "Retention", "RetentionConfig",
    "RetentionPolicy", "RoundRecord", "SessionRecord", "SessionState", "SessionStore", "Step",
    "StoredObject", "UnlearningBatch", "UnlearningQueue", "UnlearningRequest", "UnlearningStatus",
    "next_budget", "plan_next_round", "validate_budget",
]
