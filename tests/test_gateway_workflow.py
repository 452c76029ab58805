"""The gateway's session workflow without gRPC in front of it: a real PostgreSQL database, the
nanio bucket and the anonymizer process with the tiny model (the workflow reaches it through its
client, as the gateway does). Request-id replay (ResponseOnce) against the real idempotency table."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from services.gateway.anonymizer import AnonymizerClient
from services.gateway.auth import Caller
from services.gateway.config import GatewayConfig
from services.gateway.dependencies import CircuitBreaker
from services.gateway.events import SessionEvents
from services.gateway.idempotency import ResponseOnce, fingerprint
from services.gateway.releases import ReleasePublisher
from services.gateway.rounds import RoundGenerator
from services.gateway.workflow import (Answer, NewSession, RoundEvent, SessionView,
                                       SessionWorkflow, Upload)
from veil.db import Database, DatabaseConfig
from veil.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from veil.rpc import ChannelConfig, open_channel
from services.gateway.state import FeedbackKind, GatewayState, RoundRecord, SessionState
from veil.store import ObjectInfo, ObjectStore, open_store
from veil.v1 import common_pb2, gateway_pb2

T = TypeVar("T")
EXPLICIT = common_pb2.PrivacySetting(explicit=common_pb2.ExplicitBudget(attribute_epsilon={"Male": 2.0}))


@pytest.fixture
def state(pg_url: str) -> Iterator[GatewayState]:
    state = GatewayState(Database.from_config(DatabaseConfig(url=pg_url)))
    yield state
    state.close()


@pytest.fixture
def run_workflow(state, services_store, anonymizer_service, tokens_file
                 ) -> Callable[[Callable[[SessionWorkflow], Awaitable[T]]], T]:
    """run_workflow(steps): `await steps(workflow)` in an event loop of its own, with a workflow
    wired as the gateway wires it (no unlearner)."""
    store = open_store(services_store)

    def run(steps: Callable[[SessionWorkflow], Awaitable[T]]) -> T:
        async def main() -> T:
            channel = open_channel(anonymizer_service.target, ChannelConfig())
            anonymizer = AnonymizerClient(channel, timeout_seconds=60,
                                          breaker=CircuitBreaker("anonymizer", failures=5, cool_down=1.0))
            events = SessionEvents()
            config = GatewayConfig(tenant_tokens_file=str(tokens_file), stream_poll_seconds=0.2)
            workflow = SessionWorkflow(state, store, anonymizer, None,
                                       RoundGenerator(state, anonymizer, store, events, 5.0),
                                       ReleasePublisher(state, store), events, config)
            try:
                return await steps(workflow)
            finally:
                await channel.close()

        return asyncio.run(main())

    return run


async def collect(events) -> list[RoundEvent]:
    return [event async for event in events]


def test_create_answer_and_accept(run_workflow, state, tenant, face_png):
    caller = Caller(tenant=tenant, actor="token:test")

    async def steps(workflow: SessionWorkflow):
        image = await workflow.upload(caller, Upload.received(face_png[0], "image/png", "alice"))
        ref = ObjectInfo(key=image.key, size=image.size, sha256=image.sha256,
                         content_type=image.content_type)
        created = await workflow.create(caller, NewSession("alice", ref, ("Male",), EXPLICIT,
                                                           candidates=2))
        sid = created.session.session_id
        more = Answer(sid, FeedbackKind.MORE_PRIVACY, request_id="more-1")
        second = await workflow.answer(caller, more)
        retried = await workflow.answer(caller, more)  # the same answer again: the same round
        accepted = await workflow.answer(caller, Answer(sid, FeedbackKind.ACCEPT, candidate=1))
        with pytest.raises(FailedPrecondition):
            await workflow.answer(caller, Answer(sid, FeedbackKind.LESS_PRIVACY))
        events = await collect(workflow.round_events(tenant, sid, 0))
        ledger = await workflow.ledger(tenant, "alice")
        release = accepted.view.release
        assert release is not None
        content = b"".join([c async for c in workflow.download(caller, ObjectInfo(
            key=release.result.release.target.key, size=0,
            sha256=release.result.release.target.sha256, content_type=""))])
        return image, created, second, retried, accepted, events, ledger, content

    image, created, second, retried, accepted, events, ledger, content = run_workflow(steps)
    assert image.sha256 == hashlib.sha256(face_png[0]).hexdigest()
    assert (image.key, image.width, image.height) == (f"uploads/{image.sha256}.png", 16, 16)
    assert created.session.state is SessionState.ACTIVE and created.session.round_count == 1
    first = created.latest_round
    assert first is not None and first.number == 1 and len(first.candidates) == 2
    assert first.settings.attribute_epsilon == {"Male": 2.0}
    assert second.next_round is not None and second.next_round.number == 2
    assert second.next_round.settings.attribute_epsilon["Male"] < 2.0
    assert retried.next_round == second.next_round and retried.view.session.round_count == 2
    assert accepted.next_round is None and accepted.view.session.state is SessionState.ACCEPTED
    release = accepted.view.release
    assert release is not None and release.accepted_round.number == 2
    assert release.result.release.candidate_index == 1
    assert hashlib.sha256(content).hexdigest() == release.result.release.target.sha256
    assert [e.number for e in events if isinstance(e, RoundRecord)] == [1, 2]
    ended = events[-1]
    assert isinstance(ended, SessionView) and ended.release is not None
    assert ended.release.result.release.release_id == release.result.release.release_id
    assert ended.release.accepted_round == release.accepted_round
    summary, entries = ledger
    assert [e.session_id for e in entries] == [created.session.session_id]
    assert summary.sum_epsilon == pytest.approx(release.result.charge.entry.epsilon)
    actions = [r.action for r in state.audit.records(tenant)]
    assert "image.upload" in actions and "object.download" in actions


def test_a_retried_create_finds_its_session(run_workflow, tenant, face_png):
    caller = Caller(tenant=tenant, actor="token:test")

    async def steps(workflow: SessionWorkflow) -> tuple[SessionView, SessionView, list]:
        image = await workflow.upload(caller, Upload.received(face_png[1], "image/png", "bob"))
        ref = ObjectInfo(key=image.key, size=0, sha256=image.sha256, content_type="")
        new = NewSession("bob", ref, ("Male",), EXPLICIT, candidates=1, request_id="create-1")
        first = await workflow.create(caller, new)
        again = await workflow.create(caller, new)
        page, _ = await workflow.sessions(tenant, "bob", 0, "")
        return first, again, page

    first, again, page = run_workflow(steps)
    assert again == first
    assert [s.session_id for s in page] == [first.session.session_id]


def test_bad_input_is_refused_before_a_session_exists(run_workflow, tenant, face_png):
    caller = Caller(tenant=tenant, actor="token:test")

    async def steps(workflow: SessionWorkflow) -> list[str]:
        with pytest.raises(InvalidArgument, match="no image"):
            await workflow.create(caller, NewSession("carol", None, ("Male",), EXPLICIT))
        with pytest.raises(InvalidArgument, match="unknown attribute"):
            await workflow.create(caller, NewSession("carol", None, ("Wings",), EXPLICIT))
        with pytest.raises(InvalidArgument):
            await workflow.upload(caller, Upload.received(b"not an image", "image/png", "carol"))
        page, _ = await workflow.sessions(tenant, "carol", 0, "")
        return [s.session_id for s in page]

    assert run_workflow(steps) == []
    with pytest.raises(DataLoss, match="declared"):
        Upload.received(face_png[0], "image/png", "carol", declared_sha256="0" * 64)


def test_a_request_id_runs_the_work_once_and_replays_its_response(state, tenant):
    once = ResponseOnce(state.idempotency)
    runs: list[str] = []

    async def work(value: str) -> gateway_pb2.Session:
        runs.append(value)
        return gateway_pb2.Session(session_id=value)

    async def failing() -> gateway_pb2.Session:
        runs.append("failed")
        raise FailedPrecondition("not now")

    request = gateway_pb2.FeedbackRequest(session_id="s", request_id="req-1")
    key = fingerprint(request)
    assert key == fingerprint(gateway_pb2.FeedbackRequest(session_id="s", request_id="req-2"))

    async def calls() -> list[str]:
        results = []
        for value in ("first", "second"):
            response = await once.run(tenant, "req-1", "Test", key, gateway_pb2.Session,
                                      lambda v=value: work(v))
            results.append(response.session_id)
        with pytest.raises(InvalidArgument):  # the same id for another request
            await once.run(tenant, "req-1", "Test", fingerprint(request, b"x"),
                           gateway_pb2.Session, lambda: work("third"))
        with pytest.raises(FailedPrecondition):
            await once.run(tenant, "req-2", "Test", key, gateway_pb2.Session, failing)
        retried = await once.run(tenant, "req-2", "Test", key, gateway_pb2.Session,
                                 lambda: work("retry"))
        unkeyed = [await once.run(tenant, "", "Test", key, gateway_pb2.Session, lambda: work("a")),
                   await once.run(tenant, "", "Test", key, gateway_pb2.Session, lambda: work("a"))]
        return [*results, retried.session_id, *(u.session_id for u in unkeyed)]

    assert asyncio.run(calls()) == ["first", "first", "retry", "a", "a"]
    assert runs == ["first", "failed", "retry", "a", "a"]


def _ref(image) -> ObjectInfo:
    return ObjectInfo(key=image.key, size=0, sha256=image.sha256, content_type="")


async def _started(workflow: SessionWorkflow, caller: Caller, png: bytes, subject_id: str,
                   candidates: int) -> tuple[SessionView, str]:
    """A new session on a new upload of `png`, and its id."""
    image = await workflow.upload(caller, Upload.received(png, "image/png", subject_id))
    created = await workflow.create(caller, NewSession(subject_id, _ref(image), ("Male",),
                                                       EXPLICIT, candidates=candidates))
    return created, created.session.session_id


def _session_objects(store: ObjectStore, session_id: str) -> list[str]:
    return [info.key for info in store.list(f"sessions/{session_id}/")]


def test_closing_a_session_ends_it_without_a_charge_and_deletes_its_candidates(
        run_workflow, state, services_store, tenant, face_png):
    caller = Caller(tenant=tenant, actor="token:test")
    store = open_store(services_store).for_tenant(tenant)

    async def steps(workflow: SessionWorkflow):
        created, sid = await _started(workflow, caller, face_png[2], "dora", 2)
        before = set(_session_objects(store, sid))
        assert created.latest_round is not None
        assert {c.image.key for c in created.latest_round.candidates} <= before
        with pytest.raises(NotFound):  # another tenant's session is unknown to the caller
            await workflow.close(Caller(tenant=f"{tenant}-other", actor="token:x"), sid)
        closed = await workflow.close(caller, sid)
        again = await workflow.close(caller, sid)
        for kind in (FeedbackKind.MORE_PRIVACY, FeedbackKind.ACCEPT):
            with pytest.raises(FailedPrecondition, match="closed"):
                await workflow.answer(caller, Answer(sid, kind))
        events = await collect(workflow.round_events(tenant, sid, 0))
        # An accepted session stays accepted.
        other = await workflow.create(caller, NewSession("dora", _ref(created.session.original),
                                                         ("Male",), EXPLICIT, candidates=1))
        await workflow.answer(caller, Answer(other.session.session_id, FeedbackKind.ACCEPT))
        with pytest.raises(FailedPrecondition, match="accepted"):
            await workflow.close(caller, other.session.session_id)
        return sid, before, closed, again, events

    sid, before, closed, again, events = run_workflow(steps)
    assert len(before) >= 2 and _session_objects(store, sid) == []
    assert closed.session.state is SessionState.CLOSED and closed.release is None
    assert again == closed
    assert isinstance(events[-1], SessionView) and events[-1].session.state is SessionState.CLOSED
    assert sid not in {e.session_id for e in state.ledger.entries(tenant, "dora")}
    closes = [r for r in state.audit.records(tenant, target=sid) if r.action == "session.close"]
    assert len(closes) == 1


def test_a_round_finishing_after_close_is_discarded(run_workflow, state, services_store, tenant,
                                                    face_png):
    caller = Caller(tenant=tenant, actor="token:test")
    store = open_store(services_store).for_tenant(tenant)

    async def steps(workflow: SessionWorkflow):
        _, sid = await _started(workflow, caller, face_png[3], "eve", 4)
        more = asyncio.create_task(workflow.answer(caller, Answer(sid, FeedbackKind.MORE_PRIVACY)))
        while (await asyncio.to_thread(state.sessions.latest_round, tenant, sid)).feedback is None:
            await asyncio.sleep(0.01)
        closed = await workflow.close(caller, sid)  # round 2 is generating (or just stored)
        outcome = await asyncio.gather(more, return_exceptions=True)
        return sid, closed, outcome[0]

    sid, closed, outcome = run_workflow(steps)
    assert closed.session.state is SessionState.CLOSED
    assert state.sessions.get_session(tenant, sid).state is SessionState.CLOSED
    assert _session_objects(store, sid) == []
    if isinstance(outcome, BaseException):  # refused once the session was closed
        assert isinstance(outcome, FailedPrecondition) and "closed" in str(outcome)
        assert state.sessions.get_session(tenant, sid).round_count == 1


def test_deleting_an_upload(run_workflow, state, services_store, tenant, face_png):
    caller = Caller(tenant=tenant, actor="token:test")
    store = open_store(services_store).for_tenant(tenant)

    async def steps(workflow: SessionWorkflow):
        unused = await workflow.upload(caller, Upload.received(face_png[4], "image/png", "finn"))
        deleted_unused, unused_sessions = await workflow.delete_upload(caller, _ref(unused))
        created, sid = await _started(workflow, caller, face_png[5], "finn", 1)
        used = created.session.original
        with pytest.raises(FailedPrecondition, match="1 active session"):
            await workflow.delete_upload(caller, _ref(used))
        with pytest.raises(NotFound):  # another tenant has no such upload
            await workflow.delete_upload(Caller(tenant=f"{tenant}-other", actor="token:x"),
                                         _ref(used))
        with pytest.raises(InvalidArgument, match="not an upload"):
            await workflow.delete_upload(caller, ObjectInfo(
                key=f"sessions/{sid}/x.png", size=0, sha256=None,
                content_type=""))
        await workflow.close(caller, sid)
        by_sha = ObjectInfo(key="", size=0, sha256=used.sha256, content_type="")
        deleted_used, used_sessions = await workflow.delete_upload(caller, by_sha)
        with pytest.raises(NotFound):
            await workflow.delete_upload(caller, by_sha)
        with pytest.raises(FailedPrecondition, match="finn"):  # the same bytes stay finn's
            await workflow.upload(caller, Upload.received(face_png[5], "image/png", "gina"))
        return (unused, deleted_unused, unused_sessions, used, deleted_used, used_sessions, sid)

    (unused, deleted_unused, unused_sessions, used, deleted_used, used_sessions,
     sid) = run_workflow(steps)
    assert (deleted_unused.key, deleted_unused.sha256, unused_sessions) == (unused.key, unused.sha256, 0)
    assert (deleted_used.key, used_sessions) == (used.key, 1)
    assert not store.exists(unused.key) and not store.exists(used.key)
    assert state.sessions.get_session(tenant, sid).original_deleted_at is not None
    deletions = [r for r in state.audit.records(tenant, limit=1000) if r.action == "upload.delete"]
    assert [(r.target, r.input_sha256) for r in deletions] == [(unused.key, unused.sha256),
                                                               (used.key, used.sha256)]
