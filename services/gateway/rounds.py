"""Generating a round: the anonymizer writes the candidates, the round is stored with them.

Each generation writes under a prefix of its own (sessions/<id>/rounds/<n>-<nonce>/), so two
replicas racing to regenerate the same round never overwrite each other's objects; the loser's
`add_round` is refused, its objects are deleted and it returns the winner's round. A generation
that fails half-way deletes what it wrote too. Once a round is stored, every other generation of
it is a loser, so the objects left under its number by a replica killed after the anonymizer wrote
them (nothing of that replica runs to delete them) are deleted then. A generation runs as its own
task: a caller that gives up (a cancelled RPC) does not stop it, and a second caller for the same
round on this replica awaits the same task.

Across replicas a round is generated once: a generation first takes the session's round lease
(services.gateway.state.round_leases) and renews it while it runs. A replica that finds the
lease held waits for the round (or for the lease to expire: its holder died) and then takes it
over; whoever holds the lease looks for the stored round first, so a round stored by a replica
that died just after storing it is returned, not generated again. Should a holder stall past its
lease, the store's refusal of a second round with one number still keeps one round.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import timedelta

from services.gateway.anonymizer import AnonymizerClient, RoundRequest
from services.gateway.events import CHANGED, SessionEvents
from services.gateway.heartbeat import heartbeat
from services.gateway.metrics import ROUND_SECONDS
from veil.errors import FailedPrecondition
from veil.privacy import PrivacySettings
from services.gateway.state import GatewayState, RoundRecord, SessionRecord
from veil.store import ObjectStore

log = logging.getLogger(__name__)


def round_seed(session_seed: int, number: int) -> int:
    """A reproducible seed per round of a session, in 1..2^63-1 (within veil.privacy's MAX_SEED;
    the range is kept so that existing sessions regenerate the rounds they had)."""
    digest = hashlib.sha256(f"{session_seed}:{number}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 1) or 1


def round_prefix(session_id: str, number: int) -> str:
    """The output prefix (an object key, no trailing "/") of one generation of a round."""
    return f"sessions/{session_id}/rounds/{number}-{uuid.uuid4().hex[:8]}"


class RoundGenerator:
    def __init__(self, state: GatewayState, anonymizer: AnonymizerClient, store: ObjectStore,
                 events: SessionEvents, lease_seconds: float) -> None:
        self._state = state
        self._anonymizer = anonymizer
        self._store = store
        self._events = events
        self._in_flight: dict[tuple[str, int], asyncio.Task[RoundRecord]] = {}
        # This process's name on round leases: a restarted replica is another owner.
        self._owner = f"gateway-{uuid.uuid4().hex}"
        self._lease = timedelta(seconds=lease_seconds)
        self._lease_poll = min(1.0, lease_seconds / 10)

    def busy(self, session_id: str) -> bool:
        return any(key[0] == session_id for key in self._in_flight)

    async def generate(self, session: SessionRecord, number: int, settings: PrivacySettings,
                       actor: str) -> RoundRecord:
        """Round `number` of `session` at `settings`, stored (see the module docstring)."""
        key = (session.session_id, number)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._generate(session, number, settings, actor))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    async def resume(self, session: SessionRecord, actor: str) -> RoundRecord:
        """Generate the round a session is waiting for (none yet, or its latest round answered
        without a successor); the latest round when it waits for none."""
        if session.round_count == 0:
            return await self.generate(session, 1, session.settings, actor)
        latest = await asyncio.to_thread(self._state.sessions.latest_round, session.tenant,
                                         session.session_id)
        if latest.feedback is None or latest.next_settings is None:
            return latest
        return await self.generate(session, latest.number + 1, latest.next_settings, actor)

    async def _generate(self, session: SessionRecord, number: int, settings: PrivacySettings,
                        actor: str) -> RoundRecord:
        session_id = session.session_id
        leases = self._state.round_leases
        while True:
            if await asyncio.to_thread(leases.take, session_id, number, self._owner, self._lease):
                break
            stored = await self._stored(session, number)
            if stored is not None:
                return stored  # the lease's holder stored it
            await asyncio.sleep(self._lease_poll)
        try:
            stored = await self._stored(session, number)
            if stored is not None:
                return stored  # stored by a replica that died before dropping its lease
            async with heartbeat(lambda: leases.renew(session_id, self._owner, self._lease),
                                 self._lease.total_seconds() / 3, f"round lease of {session_id}"):
                return await self._generate_leased(session, number, settings, actor)
        finally:
            await asyncio.shield(asyncio.to_thread(leases.drop, session_id, self._owner))

    async def _stored(self, session: SessionRecord, number: int) -> RoundRecord | None:
        stored = await asyncio.to_thread(self._state.sessions.rounds, session.tenant,
                                         session.session_id, number)
        return stored[0] if stored and stored[0].number == number else None

    async def _generate_leased(self, session: SessionRecord, number: int,
                               settings: PrivacySettings, actor: str) -> RoundRecord:
        started = time.perf_counter()
        tenant, session_id = session.tenant, session.session_id
        prefix = round_prefix(session_id, number)
        request = RoundRequest(tenant=tenant, subject_id=session.subject_id,
                               original=session.original, protect=session.protect,
                               settings=settings, candidates=session.candidates_per_round,
                               seed=round_seed(session.seed, number), output_prefix=prefix)
        try:
            generated = await self._anonymizer.generate(
                request, lambda progress: self._events.publish(session_id, progress))
            record = await asyncio.to_thread(self._state.sessions.add_round, tenant, session_id,
                                             settings=settings, candidates=generated.offered,
                                             refused=generated.refused, actor=actor)
        except FailedPrecondition:
            await asyncio.shield(asyncio.to_thread(self._discard, tenant, prefix))
            stored = await self._stored(session, number)
            if stored is not None:
                return stored  # another replica stored this round first
            raise
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._discard, tenant, prefix))
            raise
        await asyncio.to_thread(self._discard_losers, tenant, session_id, number, prefix)
        ROUND_SECONDS.observe(time.perf_counter() - started)
        self._events.publish(session_id, CHANGED)
        return record

    def _discard_losers(self, tenant: str, session_id: str, number: int, winner: str) -> None:
        """Delete the objects of every other generation of a stored round (best effort)."""
        store = self._store.for_tenant(tenant)
        try:
            for info in list(store.list(f"sessions/{session_id}/rounds/{number}-")):
                if not info.key.startswith(winner + "/"):
                    store.delete(info.key)
        except Exception as exc:
            log.warning("could not delete other generations of round %d of session %s: %s",
                        number, session_id, exc)

    def _discard(self, tenant: str, prefix: str) -> None:
        """Delete what a failed generation wrote (best effort: the error that got us here is the
        one the caller must see)."""
        store = self._store.for_tenant(tenant)
        try:
            for info in list(store.list(prefix + "/")):
                store.delete(info.key)
        except Exception as exc:
            log.warning("could not delete the objects of a failed round under %s: %s", prefix, exc)


def require_round_settled(rounds: list[RoundRecord], session_id: str) -> RoundRecord:
    """The latest round, if it awaits the owner's answer (not while the next one is generated)."""
    if not rounds:
        raise FailedPrecondition(f"session {session_id} has no round yet; its first round is "
                                 f"still being generated")
    latest = rounds[-1]
    if latest.feedback is not None:
        raise FailedPrecondition(f"round {latest.number + 1} of session {session_id} is still "
                                 f"being generated; answer it once it exists")
    return latest


async def end_failed_session(state: GatewayState, session: SessionRecord, actor: str,
                             cause: Exception) -> None:
    """Mark a session whose input can never work FAILED (unless it already ended)."""
    try:
        await asyncio.to_thread(state.sessions.fail_session, session.tenant, session.session_id,
                                actor=actor, reason=str(cause))
    except FailedPrecondition:
        pass
