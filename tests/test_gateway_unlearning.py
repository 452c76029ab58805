"""The unlearning dispatcher while the unlearner cannot be reached (a closed loopback port): the
claimed batch stays queued for the next pass, nothing is marked done, and retention keeps the
original. (The dispatch against a running unlearner is the end-to-end test's.)"""

from __future__ import annotations

import asyncio

from fixtures_db import open_session
from fixtures_store import free_port

from services.gateway.unlearner import UnlearnerClient
from services.gateway.unlearning import UnlearningDispatcher
from veil.rpc import ChannelConfig, open_channel
from veil.sessions import UnlearningStatus
from veil.store import open_store


def test_a_batch_waits_for_an_unreachable_unlearner_and_the_original_is_kept(
        gateway_state, services_store, new_tenant):
    state = gateway_state
    tenant = new_tenant()
    session, _ = open_session(state, tenant, "uma")
    accepted = state.releases.accept(tenant, session.session_id, 0, request_id="accept-uma",
                                     release_key=f"releases/{session.session_id}.png",
                                     dependent_models=["faces-classifier"], actor="test")
    state.releases.mark_published(tenant, accepted.release.release_id, actor="test")
    [request_id] = accepted.unlearning_request_ids

    async def two_passes() -> None:
        channel = open_channel(f"127.0.0.1:{free_port()}", ChannelConfig(retry_max_attempts=1))
        dispatcher = UnlearningDispatcher(
            state, UnlearnerClient(channel, timeout_seconds=2, method="default"),
            open_store(services_store), batch_size=8, max_attempts=3)
        await dispatcher.run_once()
        await dispatcher.run_once()
        await channel.close()

    asyncio.run(two_passes())
    [request] = state.unlearning.requests_for_session(tenant, session.session_id)
    assert (request.request_id, request.status, request.job_id) == (
        request_id, UnlearningStatus.BATCHED, None)
    assert request.attempts == 1  # the second pass resubmitted the same batch, claimed nothing new
    assert session.original.key not in {d.original.key for d in state.retention.originals_due()}
    assert state.sessions.get_session(tenant, session.session_id).original_deleted_at is None
