"""Finishing what a replica that died left half-done, at start-up and then periodically:

- releases charged but not published (the crash fell between the charge and the copy) are
  published; at start-up all of them, later those older than one interval (younger ones are
  probably being published by a live replica; publishing twice would be harmless anyway);
- sessions waiting for a round that nobody is generating (no round yet, or the latest round
  answered without a successor, and no unexpired round lease: the replica generating it died)
  get it, once untouched for one lease period (the replica that recorded the wait takes the
  lease within moments of it).

A retried request reaches the same work earlier through its request id (see workflow).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.gateway.downstream import input_refused
from services.gateway.metrics import RECOVERED
from services.gateway.releases import ReleasePublisher
from services.gateway.rounds import RoundGenerator, end_failed_session
from veil.errors import VeilError
from services.gateway.state import GatewayState, SessionRecord

log = logging.getLogger(__name__)

ACTOR = "gateway-recovery"


class Recovery:
    def __init__(self, state: GatewayState, publisher: ReleasePublisher, rounds: RoundGenerator,
                 *, round_lease: float) -> None:
        self._state = state
        self._publisher = publisher
        self._rounds = rounds
        self._round_age = timedelta(seconds=round_lease)

    async def run_forever(self, interval: float) -> None:
        release_age = timedelta(0)
        while True:
            try:
                await self.run_once(release_age)
            except Exception as exc:  # retried on the next pass
                log.warning("recovery pass failed: %s", exc, exc_info=exc)
            release_age = timedelta(seconds=interval)
            await asyncio.sleep(interval)

    async def run_once(self, release_age: timedelta) -> None:
        pending = await asyncio.to_thread(self._state.releases.pending_releases, release_age)
        for release in pending:
            try:
                await self._publisher.publish(release)
            except VeilError as exc:
                log.warning("release %s still unpublished: %s", release.release_id, exc)
                continue
            RECOVERED.labels("release").inc()
            log.info("published release %s of session %s", release.release_id, release.session_id)
        waiting = await asyncio.to_thread(self._state.sessions.sessions_awaiting_round,
                                          self._round_age)
        for session in waiting:
            if not self._rounds.busy(session.session_id):
                await self._resume(session)

    async def _resume(self, session: SessionRecord) -> None:
        try:
            record = await self._rounds.resume(session, ACTOR)
        except VeilError as exc:
            if not input_refused(exc):
                log.warning("round of session %s not regenerated yet: %s", session.session_id, exc)
                return
            log.error("session %s cannot continue: %s", session.session_id, exc)
            await end_failed_session(self._state, session, ACTOR, exc)
            return
        RECOVERED.labels("round").inc()
        log.info("generated round %d of session %s", record.number, session.session_id)
