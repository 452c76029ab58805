"""The gateway's state: sessions and rounds, releases and the privacy ledger, idempotency keys,
the audit log, the unlearning queue and retention, all in SQL (PostgreSQL or SQLite), plus the
feedback controller. Plain Python: the gateway servicer is a thin layer on `GatewayState`.
"""

from veil.sessions.audit import AuditLog, AuditRecord
from veil.sessions.controller import (
    ControllerConfig,
    Step,
    next_budget,
    plan_next_round,
    validate_budget,
)
from veil.sessions.idempotency import Claim, IdempotencyConfig, IdempotencyStore, Replay
from veil.sessions.ledger_store import LedgerStore
from veil.sessions.models import (
    AcceptResult,
    Candidate,
    Charge,
    FeedbackKind,
    LedgerEntryRecord,
    LedgerSummary,
    PrivacySettings,
    ReleaseRecord,
    ReleaseState,
    RoundRecord,
    SessionRecord,
    SessionState,
    StoredObject,
)
from veil.sessions.releases import ReleaseStore
from veil.sessions.state import SERVICE, GatewayState
from veil.sessions.store import SessionStore
from veil.sessions.unlearning import (
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
    "IdempotencyStore", "LedgerEntryRecord", "LedgerStore", "LedgerSummary", "PrivacySettings",
    "ReleaseRecord", "ReleaseState", "ReleaseStore", "Replay", "Retention", "RetentionConfig",
    "RetentionPolicy", "RoundRecord", "SessionRecord", "SessionState", "SessionStore", "Step",
    "StoredObject", "UnlearningBatch", "UnlearningQueue", "UnlearningRequest", "UnlearningStatus",
    "next_budget", "plan_next_round", "validate_budget",
]
