"""The unlearning dispatcher while the unlearner cannot be reached (a closed loopback port): the
claimed batch stays queued for the next pass, nothing is marked done, and retention keeps the
original. Retention keeps an original the owner uploaded again. (The dispatch against a running
unlearner is the end-to-end test's.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from fixtures_db import migrated, open_session
from fixtures_store import free_port

from services.gateway.unlearner import UnlearnerClient
from services.gateway.unlearning import UnlearningDispatcher
from veil.db import Database, DatabaseConfig
from veil.rpc import ChannelConfig, open_channel
from services.gateway.state import AuditRecord, GatewayState, UnlearningStatus
from services.gateway.state.audit import IMAGE_UPLOAD
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


@pytest.fixture
def own_state(make_pg_database) -> Iterator[GatewayState]:
    """A database of this test's own: no gateway process's retention loop acts on its rows."""
    state = GatewayState(Database.from_config(DatabaseConfig(url=migrated(make_pg_database()))))
    yield state
    state.close()


def test_retention_keeps_an_original_uploaded_again_after_its_session_finished(
        own_state, services_store, new_tenant):
    state, tenant = own_state, new_tenant()
    store = open_store(services_store).for_tenant(tenant)
    keys = {name: f"uploads/{name}-{uuid.uuid4().hex}.png" for name in ("recorded", "written", "once")}
    for key in keys.values():
        store.put(key, b"original bytes of " + key.encode(), content_type="image/png")
    sessions = {}
    for name, key in keys.items():
        session, _ = open_session(state, tenant, name, original_key=key)
        accepted = state.releases.accept(tenant, session.session_id, 0, request_id=f"accept-{name}",
                                         release_key=f"releases/{session.session_id}.png",
                                         dependent_models=[], actor="test")
        state.releases.mark_published(tenant, accepted.release.release_id, actor="test")
        sessions[name] = session
    # Uploaded again through the gateway (its audit record), at once: not due at all.
    state.audit.append(AuditRecord(tenant=tenant, actor="owner", action=IMAGE_UPLOAD,
                                   target=keys["recorded"], outcome="ok"))
    due = {d.original.key for d in state.retention.originals_due(limit=1000)}
    assert keys["recorded"] not in due and {keys["written"], keys["once"]} <= due
    # Written again by another writer (no record): the object's own time tells.
    time.sleep(1.1)  # S3 reports modification times in whole seconds
    store.put(keys["written"], b"original bytes of " + keys["written"].encode(), content_type="image/png")

    dispatcher = UnlearningDispatcher(state, None, open_store(services_store), batch_size=8, max_attempts=3)
    asyncio.run(dispatcher.apply_retention())
    assert [store.exists(keys[name]) for name in ("recorded", "written", "once")] == [True, True, False]
    deleted_at = {name: state.sessions.get_session(tenant, s.session_id).original_deleted_at
                  for name, s in sessions.items()}
    assert deleted_at["recorded"] is None  # its original is the owner's new upload
    assert deleted_at["written"] is not None and deleted_at["once"] is not None


def test_retention_keeps_an_upload_recorded_after_it_read_the_due_list(
        own_state, services_store, new_tenant):
    """The race CI once lost: the owner uploads the bytes again within the second after retention
    listed them as due; the object's time cannot tell, the audit record read before the delete can."""
    state, tenant = own_state, new_tenant()
    store = open_store(services_store).for_tenant(tenant)
    key = f"uploads/stale-{uuid.uuid4().hex}.png"
    store.put(key, b"original bytes", content_type="image/png")
    session, _ = open_session(state, tenant, "stale", original_key=key)
    state.sessions.close_session(tenant, session.session_id, actor="test")
    [due] = [d for d in state.retention.originals_due(limit=1000) if d.original.key == key]
    assert not state.retention.uploaded_since(tenant, key, due.finished_at)
    state.audit.append(AuditRecord(tenant=tenant, actor="owner", action=IMAGE_UPLOAD,
                                   target=key, outcome="ok"))
    assert state.retention.uploaded_since(tenant, key, due.finished_at)

    dispatcher = UnlearningDispatcher(state, None, open_store(services_store), batch_size=8, max_attempts=3)
    assert dispatcher._delete_unless_uploaded_again(due) is False
    assert store.exists(key)
