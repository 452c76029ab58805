"""Idempotency keys: a repeated request id returns the first result, across replicas.

Protocol for a servicer method that takes a request id:

    outcome = store.claim(tenant, request_id, method, request_sha256)
    if isinstance(outcome, Replay):
        return parse(outcome.response)           # the first result, byte for byte
    try:
        response = do_the_work()
    except Exception:
        store.abandon(outcome)                   # let a retry run the work again
        raise
    store.complete(outcome, response.SerializeToString())

`request_sha256` fingerprints the request without its request id (e.g. sha256 of
`SerializeToString(deterministic=True)` with request_id cleared). The same id with a different
fingerprint or method is InvalidArgument. The key row is the cross-replica lock: while one
replica holds an unexpired claim, another gets Aborted (retry later). The holder `renew`s the
claim while its work runs, so a claim not renewed for the lease (its replica died) is taken
over within seconds. Work that commits state should itself be idempotent per
request id (e.g. `ReleaseStore.accept` stores the request id with the release), so a replica that
dies between committing the work and `complete` leaves nothing for the take-over to redo.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa

from veil.config import env_field
from veil.db import Database, insert_ignore
from veil.db.clock import Clock, as_utc, utcnow
from veil.errors import Aborted, InvalidArgument, quoted
from services.gateway.state import tables as t
from services.gateway.state.models import require_id, require_sha256

PENDING, DONE = "pending", "done"


@dataclasses.dataclass(frozen=True)
class IdempotencyConfig:
    lease_seconds: float = env_field(
        "VEIL_IDEMPOTENCY_LEASE_SECONDS", 3.0, min=1.0, max=3600.0,
        doc="a claimed request id whose replica stopped renewing it (it renews every third of "
            "this while the work runs) for this long is taken over")
    ttl_seconds: float = env_field("VEIL_IDEMPOTENCY_TTL_SECONDS", 7 * 86400.0, min=60.0,
                                   doc="completed request ids older than this may be purged")


@dataclasses.dataclass(frozen=True)
class Claim:
    """This caller owns the request id and must `complete` or `abandon` it."""

    tenant: str
    request_id: str
    token: str


@dataclasses.dataclass(frozen=True)
class Replay:
    """The request id was completed before: return `response` unchanged."""

    response: bytes


class IdempotencyStore:
    def __init__(self, db: Database, config: IdempotencyConfig = IdempotencyConfig(),
                 clock: Clock = utcnow) -> None:
        self._db = db
        self.config = config
        self._clock = clock

    def claim(self, tenant: str, request_id: str, method: str, request_sha256: str) -> Claim | Replay:
        require_id(request_id, "request id")
        require_id(method, "method")
        require_sha256(request_sha256, "request fingerprint")
        keys = t.idempotency_keys
        token = str(uuid.uuid4())
        now = self._clock()
        with self._db.write() as conn:
            insert_ignore(conn, keys, {
                "tenant": tenant, "request_id": request_id, "method": method,
                "request_sha256": request_sha256, "state": PENDING, "claim_token": token,
                "claimed_at": now}, ["tenant", "request_id"])
            row = conn.execute(sa.select(keys).where(keys.c.tenant == tenant,
                                                     keys.c.request_id == request_id)
                               .with_for_update()).one()
            if row.method != method or row.request_sha256 != request_sha256:
                raise InvalidArgument(f"request id {quoted(request_id)} was already used for a "
                                      f"different request ({row.method}); use a new request id")
            if row.state == DONE:
                return Replay(bytes(row.response))
            if row.claim_token == token:
                return Claim(tenant, request_id, token)
            if as_utc(row.claimed_at) + timedelta(seconds=self.config.lease_seconds) > now:
                raise Aborted(f"request {quoted(request_id)} is still being processed; retry later")
            # The claiming replica died: take the request over.
            conn.execute(sa.update(keys).where(keys.c.tenant == tenant,
                                               keys.c.request_id == request_id)
                         .values(claim_token=token, claimed_at=now))
            return Claim(tenant, request_id, token)

    def complete(self, claim: Claim, response: bytes) -> None:
        """Store the result. Aborted if the claim was taken over meanwhile (lease expired)."""
        keys = t.idempotency_keys
        with self._db.write() as conn:
            done = conn.execute(sa.update(keys).where(
                keys.c.tenant == claim.tenant, keys.c.request_id == claim.request_id,
                keys.c.claim_token == claim.token, keys.c.state == PENDING,
            ).values(state=DONE, response=bytes(response), completed_at=self._clock()))
            if done.rowcount != 1:
                raise Aborted(f"request {quoted(claim.request_id)}: claim lost to another replica")

    def renew(self, claim: Claim) -> None:
        """Restart the lease of a claim whose work still runs (the heartbeat of its replica)."""
        keys = t.idempotency_keys
        with self._db.write() as conn:
            conn.execute(sa.update(keys).where(
                keys.c.tenant == claim.tenant, keys.c.request_id == claim.request_id,
                keys.c.claim_token == claim.token, keys.c.state == PENDING,
            ).values(claimed_at=self._clock()))

    def abandon(self, claim: Claim) -> None:
        """Forget an unfinished claim so a retry with the same id runs the work again."""
        keys = t.idempotency_keys
        with self._db.write() as conn:
            conn.execute(sa.delete(keys).where(
                keys.c.tenant == claim.tenant, keys.c.request_id == claim.request_id,
                keys.c.claim_token == claim.token, keys.c.state == PENDING))

    def purge(self, before: datetime | None = None) -> int:
        """Delete completed keys claimed before `before` (default: now - ttl); returns the count."""
        keys = t.idempotency_keys
        cutoff = before or self._clock() - timedelta(seconds=self.config.ttl_seconds)
        with self._db.write() as conn:
            return conn.execute(sa.delete(keys).where(keys.c.state == DONE,
                                                      keys.c.claimed_at < cutoff)).rowcount
