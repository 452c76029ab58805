"""Leases on in-flight rounds: which replica generates a session's next round, until when.

A replica takes the session's lease (one row per session, gw_round_leases) before it asks the
anonymizer for a round, renews it by a heartbeat while the round generates, and drops it once
the round is stored or has failed. The row is the cross-replica lock: taking it is an insert or
a conditional update under a row lock, so of two replicas racing exactly one holds it, and a
lease whose holder stopped renewing (its process died) is taken over as soon as it expires.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from veil.db import Database, insert_ignore
from veil.db.clock import Clock, as_utc, utcnow
from services.gateway.state import tables as t


class RoundLeases:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def take(self, session_id: str, number: int, owner: str, ttl: timedelta) -> bool:
        """Hold the session's lease for round `number` until now + `ttl`; False while another
        owner holds an unexpired one."""
        leases = t.round_leases
        now = self._clock()
        with self._db.write() as conn:
            insert_ignore(conn, leases, {"session_id": session_id, "number": number,
                                         "owner": owner, "expires_at": now + ttl}, ["session_id"])
            row = conn.execute(sa.select(leases).where(leases.c.session_id == session_id)
                               .with_for_update()).one()
            if row.owner != owner and as_utc(row.expires_at) > now:
                return False
            conn.execute(sa.update(leases).where(leases.c.session_id == session_id)
                         .values(number=number, owner=owner, expires_at=now + ttl))
            return True

    def renew(self, session_id: str, owner: str, ttl: timedelta) -> bool:
        """Extend this owner's lease; False when it was lost (expired and taken over)."""
        leases = t.round_leases
        with self._db.write() as conn:
            return conn.execute(sa.update(leases).where(
                leases.c.session_id == session_id, leases.c.owner == owner,
            ).values(expires_at=self._clock() + ttl)).rowcount == 1

    def drop(self, session_id: str, owner: str) -> None:
        leases = t.round_leases
        with self._db.write() as conn:
            conn.execute(sa.delete(leases).where(leases.c.session_id == session_id,
                                                 leases.c.owner == owner))
