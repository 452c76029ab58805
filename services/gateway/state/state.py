"""`GatewayState`: every store of the gateway on one database, built from the environment."""

from __future__ import annotations

from collections.abc import Mapping

from veil.config import from_env
from veil.db import Database, DatabaseConfig, migrate
from veil.db.clock import Clock, utcnow
from veil.ledger import LedgerConfig
from services.gateway.state.audit import AuditLog
from services.gateway.state.controller import ControllerConfig
from services.gateway.state.idempotency import IdempotencyConfig, IdempotencyStore
from services.gateway.state.ledger_store import LedgerStore
from services.gateway.state.releases import ReleaseStore
from services.gateway.state.round_leases import RoundLeases
from services.gateway.state.store import SessionStore
from services.gateway.state.unlearning import Retention, RetentionConfig, UnlearningQueue
from services.gateway.state.uploads import UploadSubjects

SERVICE = "gateway"


class GatewayState:
    def __init__(self, db: Database, *, ledger: LedgerConfig = LedgerConfig(),
                 controller: ControllerConfig = ControllerConfig(),
                 idempotency: IdempotencyConfig = IdempotencyConfig(),
                 retention: RetentionConfig = RetentionConfig(), clock: Clock = utcnow) -> None:
        self.db = db
        self.controller = controller
        self.audit = AuditLog(db, clock)
        self.ledger = LedgerStore(db, ledger, clock)
        self.sessions = SessionStore(db, self.audit, clock)
        self.upload_subjects = UploadSubjects(db, clock)
        self.round_leases = RoundLeases(db, clock)
        self.releases = ReleaseStore(db, self.sessions, self.ledger, self.audit, clock)
        self.idempotency = IdempotencyStore(db, idempotency, clock)
        self.unlearning = UnlearningQueue(db, clock)
        self.retention = Retention(db, self.audit, retention, clock)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 migrate_schema: bool = False) -> GatewayState:
        """Read every VEIL_* setting (ConfigError on a bad one) and open the database; with
        `migrate_schema` also bring the gateway's tables up to date (the embedded mode; in a
        cluster a migration Job does that before the replicas start)."""
        configs = dict(ledger=from_env(LedgerConfig, environ),
                       controller=from_env(ControllerConfig, environ),
                       idempotency=from_env(IdempotencyConfig, environ),
                       retention=from_env(RetentionConfig, environ))
        db = Database.from_config(from_env(DatabaseConfig, environ))
        if migrate_schema:
            migrate(SERVICE, db.engine)
        return cls(db, **configs)

    def close(self) -> None:
        self.db.dispose()
