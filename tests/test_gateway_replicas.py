"""Gateway replicas on one PostgreSQL database: concurrent accepts never pass a subject's cap,
a request id is honoured once across replicas, a SIGKILLed gateway's session continues on a
restarted one, work a dead replica left (a charged release, a round) is finished, and an
unreachable unlearner refuses an accept before anything is charged."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from datetime import timedelta

import grpc
import pytest
import sqlalchemy as sa
from fixtures_services import failure, start_anonymizer, wait_for
from fixtures_store import free_port

from veil.db import Database, DatabaseConfig
from veil.db.clock import utcnow
from veil.ledger import AttributeSpend, compose
from veil.privacy import Mechanism
from services.gateway.state import ControllerConfig, FeedbackKind, GatewayState, plan_next_round
from services.gateway.state import tables as t
from veil.store import open_store
from veil.v1 import gateway_pb2

Code = grpc.StatusCode
MORE = FeedbackKind.MORE_PRIVACY


def all_at_once(calls):
    """Run the calls in threads released together; their results (or RpcErrors) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except grpc.RpcError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def tenant_keys(services_store, tenant: str, prefix: str) -> list[str]:
    store = open_store(services_store).for_tenant(tenant)
    return [info.key for info in store.list(prefix)]


def test_twenty_concurrent_accepts_on_two_gateways_charge_exactly_what_the_cap_admits(
        start_gateway, new_tenant, face_png, services_store):
    spend = [AttributeSpend("Male", Mechanism.RANDOMIZED_RESPONSE, 1.0).event()]
    five, six = (compose(spend * n, 1e-6).composed_epsilon for n in (5, 6))
    cap = (five + six) / 2
    gateways = [start_gateway(VEIL_LEDGER_CAP=f"{cap:.6f}") for _ in range(2)]
    tenant = new_tenant()
    clients = [g.client(tenant) for g in gateways]
    image = clients[0].upload_image(face_png[5])
    sessions = all_at_once([
        lambda i=i: clients[i % 2].create_session("zed", image, protect=["Male"],
                                                  epsilon={"Male": 1.0}, candidates=1)
        for i in range(20)])
    assert all(isinstance(s, gateway_pb2.Session) for s in sessions), sessions
    before = sum(g.metric("veil_gateway_ledger_refusals_total") for g in gateways)

    outcomes = all_at_once([
        lambda i=i: clients[i % 2].feedback(sessions[i].session_id, "accept", candidate=0)
        for i in range(20)])

    codes = Counter(o.code() if isinstance(o, grpc.RpcError) else Code.OK for o in outcomes)
    assert codes == {Code.OK: 5, Code.FAILED_PRECONDITION: 15}
    refusals = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert all("release refused" in o.details() and "nothing was charged or published" in o.details()
               for o in refusals)
    ledger = clients[1].ledger("zed")
    assert len(ledger.entries) == 5
    assert ledger.summary.composed_epsilon == pytest.approx(five, rel=1e-6) and five <= cap
    charged = {o.session.session_id for o in outcomes if not isinstance(o, grpc.RpcError)}
    assert {e.session_id for e in ledger.entries} == charged
    assert sorted(tenant_keys(services_store, tenant, "releases/")) == sorted(
        f"releases/{sid}.png" for sid in charged)
    for session in sessions:
        state = clients[0].get_session(session.session_id).state
        expected = "ACCEPTED" if session.session_id in charged else "ACTIVE"
        assert gateway_pb2.SessionState.Name(state) == f"SESSION_STATE_{expected}"
    assert sum(g.metric("veil_gateway_ledger_refusals_total") for g in gateways) - before == 15
    for client in clients:
        client.close()


def test_a_request_id_is_honoured_once_across_two_gateways(start_gateway, new_tenant, face_png):
    gateways = [start_gateway() for _ in range(2)]
    tenant = new_tenant()
    clients = [g.client(tenant) for g in gateways]
    image = clients[0].upload_image(face_png[6])

    def create(client):
        return client.create_session("yan", image, protect=["Male"], level=4, candidates=1,
                                     request_id="same-create")

    results = all_at_once([lambda c=c: create(c) for c in clients])
    # The replica that lost the race for the id is told to retry (ABORTED) while the first runs.
    done = [r for r in results if isinstance(r, gateway_pb2.Session)]
    assert done and all(r.code() == Code.ABORTED for r in results if r not in done)
    retried = [create(c) for c in clients]
    assert {s.session_id for s in done + retried} == {done[0].session_id}
    assert retried[0] == retried[1] == done[0]
    sid = done[0].session_id
    assert [s.session_id for s in clients[1].list_sessions("yan")] == [sid]

    more = clients[0].feedback(sid, "more", request_id="same-more")
    assert clients[1].feedback(sid, "more", request_id="same-more") == more
    assert clients[1].get_session(sid).round_count == 2
    for client in clients:
        client.close()


def test_a_session_continues_after_its_gateway_is_sigkilled_mid_feedback(
        start_gateway, new_tenant, face_png, gateway_state, services_store):
    tenant = new_tenant()
    doomed = start_gateway(VEIL_IDEMPOTENCY_LEASE_SECONDS="1")
    with doomed.client(tenant) as client:
        image = client.upload_image(face_png[7])
        session = client.create_session("xia", image, protect=["Male"], level=5, candidates=2)
    sid = session.session_id
    lost: list[object] = []

    def answer() -> None:
        with doomed.client(tenant) as client:
            try:
                lost.append(client.feedback(sid, "more", request_id="more-before-kill"))
            except grpc.RpcError as exc:
                lost.append(exc)

    caller = threading.Thread(target=answer)
    caller.start()
    wait_for(lambda: gateway_state.sessions.feedback_round(tenant, sid, "more-before-kill"),
             what="the feedback to be recorded")
    doomed.kill()
    caller.join(timeout=60)

    successor = start_gateway(VEIL_IDEMPOTENCY_LEASE_SECONDS="1")
    with successor.client(tenant) as client:
        # The retry (same request id) finds the recorded feedback and finishes its round, once
        # the dead replica's claim on the id has lapsed.
        more = wait_for(lambda: _retry_aborted(lambda: client.feedback(
            sid, "more", request_id="more-before-kill")), what="the retried feedback")
        assert more.round.number == 2
        assert (more.round.attribute_epsilon["Male"], more.round.identity_epsilon) == (1.0, 1.0)
        assert client.get_session(sid).round_count == 2
        accepted = client.feedback(sid, "accept", candidate=1)
        assert accepted.session.state == gateway_pb2.SESSION_STATE_ACCEPTED

    # No object of a lost generation is left: every object of the session's rounds belongs to a
    # stored round (the anonymizer drops the results of the call the kill cut off).
    stored = {c.image.key.rpartition("/")[0] for r in gateway_state.sessions.rounds(tenant, sid)
              for c in r.candidates}
    assert len(stored) == 2
    wait_for(lambda: {k.rpartition("/")[0] for k in tenant_keys(
        services_store, tenant, f"sessions/{sid}/")} == stored, what="no orphaned objects")


# Slow enough that a round takes a few seconds on the tiny model, so the kill lands mid-round.
SLOW_SAMPLING_STEPS = 24


@pytest.fixture(scope="module")
def slow_anonymizer(tiny_model_dir, services_store, services_logs, tmp_path_factory):
    service = start_anonymizer(tiny_model_dir, services_store, services_logs / "slow-anonymizer.log",
                               tmp_path_factory.mktemp("slow-cache"), sampling_steps=SLOW_SAMPLING_STEPS)
    yield service
    service.stop()


def round_lease_of(state: GatewayState, session_id: str):
    with state.db.read() as conn:
        return conn.execute(sa.select(t.round_leases).where(
            t.round_leases.c.session_id == session_id)).first()


def test_a_round_of_a_sigkilled_gateway_is_taken_over_within_seconds(
        start_gateway, slow_anonymizer, new_tenant, face_png, gateway_state, services_store):
    """Default leases: the dead replica's request id and round are free again within seconds,
    the retry and a new request succeed on the other replica, and the round exists once."""
    doomed, survivor = (start_gateway(VEIL_ANONYMIZER_TARGET=slow_anonymizer.target)
                        for _ in range(2))
    tenant = new_tenant()
    create = dict(protect=["Male"], level=5, candidates=4, request_id="create-before-kill")
    with survivor.client(tenant) as client:
        image = client.upload_image(face_png[6], subject_id="yan")

    def doomed_create() -> None:
        with doomed.client(tenant) as client, contextlib.suppress(grpc.RpcError):
            client.create_session("yan", image, **create)

    threading.Thread(target=doomed_create, daemon=True).start()
    session = wait_for(lambda: gateway_state.sessions.session_for_request(tenant, create["request_id"]),
                       timeout=60, what="the session to be created")
    sid = session.session_id
    wait_for(lambda: round_lease_of(gateway_state, sid), timeout=60, what="round 1 in flight")
    doomed.kill()
    died = time.monotonic()
    assert gateway_state.sessions.rounds(tenant, sid) == []  # killed mid-round

    with survivor.client(tenant) as client:
        retried = wait_for(lambda: _retry_aborted(lambda: client.create_session("yan", image, **create)),
                           timeout=10, what="the retried CreateSession")
        recovered = time.monotonic() - died
        assert retried.session_id == sid and retried.round_count == 1
        asked = time.monotonic() - died
        more = client.feedback(sid, "more", request_id="after-kill")
    assert recovered < 10 and asked < 10, (recovered, asked)
    assert more.round.number == 2
    assert [r.number for r in gateway_state.sessions.rounds(tenant, sid)] == [1, 2]
    assert round_lease_of(gateway_state, sid) is None  # dropped once stored
    first = {c.image.key.rpartition("/")[0] for c in gateway_state.sessions.rounds(tenant, sid, 1)[0].candidates}
    wait_for(lambda: {k.rpartition("/")[0] for k in tenant_keys(
        services_store, tenant, f"sessions/{sid}/rounds/1-")} == first,
        what="one generation of round 1 left")


def _retry_aborted(call):
    try:
        return call()
    except grpc.RpcError as exc:
        if exc.code() != Code.ABORTED:
            raise
        return None


def test_work_a_dead_replica_left_is_finished(gateway, start_gateway, new_tenant, face_png,
                                             gateway_db_url, gateway_state, services_store):
    replicas = [gateway, start_gateway()]  # two live replicas: their recovery loops race
    tenant = new_tenant()
    with gateway.client(tenant) as client:
        charged = client.create_session("wu", client.upload_image(face_png[0]), protect=["Male"],
                                        level=2, candidates=1)
        answered = client.create_session("wu", client.upload_image(face_png[1]), protect=["Male"],
                                         level=2, candidates=1)
    before = [r.metric("veil_gateway_recovered_total", kind=k) for r in replicas
              for k in ("release", "round")]
    # A replica that died five minutes ago: it charged a release without publishing it, and
    # recorded feedback without generating the next round.
    dead = GatewayState(Database.from_config(DatabaseConfig(url=gateway_db_url)),
                        clock=lambda: utcnow() - timedelta(minutes=5))
    pending = dead.releases.accept(tenant, charged.session_id, 0, request_id="dead-accept",
                                   release_key=f"releases/{charged.session_id}.png",
                                   dependent_models=[], actor="dead-replica")
    rounds = dead.sessions.rounds(tenant, answered.session_id)
    dead.sessions.record_feedback(tenant, answered.session_id, 1, MORE,
                                  next_settings=plan_next_round(rounds, MORE, ControllerConfig()),
                                  actor="dead-replica", request_id="dead-more")
    dead.close()
    assert pending.release.state.value == "pending"

    # The live gateways' recovery loops publish the release and generate the round, once.
    wait_for(lambda: gateway_state.releases.get_release(tenant, charged.session_id).state.value
             == "published", what="the release's publication")
    with gateway.client(tenant) as client:
        release = client.get_session(charged.session_id).release
        assert release.image.object.key == f"releases/{charged.session_id}.png"
        assert client.download(release.image.object)
        session = wait_for(lambda: (s := client.get_session(answered.session_id)).round_count == 2
                           and s, what="the missing round")
        assert session.latest_round.attribute_epsilon["Male"] == 3.0  # level 2's 6, halved
        # The owner's retry of the dead replica's request returns that round.
        retried = client.feedback(answered.session_id, "more", request_id="dead-more")
        assert retried.round.number == 2 and client.get_session(answered.session_id).round_count == 2
    stored = {c.image.key.rpartition("/")[0]
              for r in gateway_state.sessions.rounds(tenant, answered.session_id) for c in r.candidates}
    wait_for(lambda: {k.rpartition("/")[0] for k in tenant_keys(
        services_store, tenant, f"sessions/{answered.session_id}/")} == stored,
        what="no objects of a losing generation")
    after = [r.metric("veil_gateway_recovered_total", kind=k) for r in replicas
             for k in ("release", "round")]
    gained = [a - b for a, b in zip(after, before)]
    assert gained[0] + gained[2] >= 1 and gained[1] + gained[3] >= 1  # releases, rounds


def test_an_unreachable_unlearner_refuses_the_accept_before_anything_is_charged(
        start_gateway, gateway, new_tenant, face_png):
    tenant = new_tenant()
    isolated = start_gateway(VEIL_UNLEARNER_TARGET=f"127.0.0.1:{free_port()}",
                             VEIL_UNLEARNER_TIMEOUT_SECONDS="2", VEIL_GRPC_RETRY_MAX_ATTEMPTS="2")
    with isolated.client(tenant) as client:
        session = client.create_session("vic", client.upload_image(face_png[2]), protect=["Male"],
                                        level=2, candidates=1)
        refused = failure(client.feedback, session.session_id, "accept", candidate=0)
        assert refused.code() == Code.UNAVAILABLE and "unlearner" in refused.details()
        assert failure(client.ledger, "vic").code() == Code.NOT_FOUND
        assert client.get_session(session.session_id).state == gateway_pb2.SESSION_STATE_ACTIVE
    with gateway.client(tenant) as client:  # a replica without an unlearner accepts it
        assert client.feedback(session.session_id, "accept", candidate=0).release.charged_epsilon == 6.0

