"""Gateway state on PostgreSQL and SQLite: sessions, accept, ledger, tenancy, audit, retention."""

import dataclasses
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fixtures_db import candidates_for, open_session, settings_for, sha256_of, stored

from veil.db import Database, DatabaseConfig, migrate
from veil.errors import Aborted, ConfigError, FailedPrecondition, InvalidArgument, NotFound
from veil.ledger import AttributeSpend, LedgerConfig, ReleaseSpend, compose
from veil.privacy import PrivacySettings
from services.gateway.state import (
    SERVICE,
    AuditRecord,
    FeedbackKind,
    GatewayState,
    RefusedCandidate,
    ReleaseState,
    Replay,
    SessionState,
    UnlearningStatus,
    plan_next_round,
)
from services.gateway.state import tables as t
from services.gateway.state.idempotency import IdempotencyConfig, IdempotencyStore

MORE = FeedbackKind.MORE_PRIVACY


@pytest.fixture
def state(gateway_db) -> GatewayState:
    return GatewayState(gateway_db, ledger=LedgerConfig(cap=10.0, delta=1e-6))


def test_session_loop_accept_publish_and_unlearning(state, tenant):
    task = f"task-{tenant}"          # model names are global: keep them unique per test
    session, first = open_session(state, tenant, "alice", eps=2.0, candidates=3, identity=1.0)
    assert session.state is SessionState.ACTIVE and session.round_count == 0
    assert [c.index for c in first.candidates] == [0, 1, 2] and first.feedback is None

    settings = plan_next_round([first], MORE, state.controller)
    assert settings.budget() == {"Male": 1.0, "identity": 0.5} and settings.level == -1
    answered = state.sessions.record_feedback(tenant, session.session_id, 1, MORE,
                                              next_settings=settings, actor="owner")
    assert answered.feedback is MORE and answered.next_settings == settings
    # After a crash here, the latest round says what to regenerate.
    assert state.sessions.latest_round(tenant, session.session_id).next_settings == settings
    with pytest.raises(InvalidArgument, match="settings its feedback asked for"):
        state.sessions.add_round(tenant, session.session_id, settings=first.settings,
                                 candidates=candidates_for(first.settings, 3, "x"), actor="gw")
    second = state.sessions.add_round(tenant, session.session_id, settings=settings,
                                      candidates=candidates_for(settings, 3, "round2"),
                                      actor="gateway")
    assert second.number == 2 and second.settings == settings
    assert state.sessions.latest_round(tenant, session.session_id) == second

    result = state.releases.accept(tenant, session.session_id, 1, request_id="req-accept",
                                   release_key=f"releases/{session.session_id}.png",
                                   dependent_models=[task, f"attr-{tenant}", task],
                                   actor="owner")
    assert not result.replayed
    assert result.session.state is SessionState.ACCEPTED
    chosen = second.candidates[1]
    assert result.release.state is ReleaseState.PENDING
    assert result.release.source == chosen.image
    assert result.release.target.key == f"releases/{session.session_id}.png"
    assert result.release.target.sha256 == chosen.image.sha256
    assert result.charge.entry.receipt_id == chosen.spend.receipt_id
    assert result.charge.entry.epsilon == pytest.approx(1.5)
    expected = compose(chosen.spend.events(), 1e-6)
    assert result.charge.summary.composed_epsilon == pytest.approx(expected.composed_epsilon)
    unspent = 10.0 - expected.composed_epsilon
    assert unspent - 0.002 <= result.charge.summary.remaining <= unspent
    assert len(result.unlearning_request_ids) == 2
    assert state.ledger.summary(tenant, "alice") == result.charge.summary
    assert [r.feedback for r in state.sessions.rounds(tenant, session.session_id)] == [
        MORE, FeedbackKind.ACCEPT]

    # Unlearning requests wait for publication.
    assert state.unlearning.claim_batch(tenant, task, 10) is None
    assert state.releases.pending_releases() == [result.release]
    published = state.releases.mark_published(tenant, result.release.release_id, actor="gateway")
    assert published.state is ReleaseState.PUBLISHED and published.published_at is not None
    assert state.releases.mark_published(tenant, result.release.release_id, actor="gw") == published
    assert result.release not in state.releases.pending_releases()

    assert set(state.unlearning.models_waiting()) >= {(tenant, task), (tenant, f"attr-{tenant}")}
    assert state.unlearning.claim_batch("another-tenant", task, 10) is None
    batch = state.unlearning.claim_batch(tenant, task, 10)
    assert batch.tenant == tenant and batch.model == task
    [mine] = batch.requests
    assert mine.session_id == session.session_id and mine.original == session.original
    assert mine.protected == published.target and mine.status is UnlearningStatus.BATCHED
    state.unlearning.mark_submitted(batch.batch_id, "job-1")
    assert state.unlearning.get_batch(batch.batch_id).job_id == "job-1"
    done = state.unlearning.mark_done(batch.batch_id)
    assert {r.status for r in done.requests} == {UnlearningStatus.DONE}

    actions = [(r.action, r.outcome) for r in state.audit.records(tenant)]
    assert actions == [("session.create", "ok"), ("round.add", "ok"), ("round.feedback", "ok"),
                       ("round.add", "ok"), ("release.accept", "charged"),
                       ("release.publish", "ok")]
    accept_record = state.audit.records(tenant)[4]
    assert accept_record.input_sha256 == session.original.sha256
    assert accept_record.model_versions == ("diffae-test@1",)


def test_accept_is_idempotent_per_request_id_and_refuses_other_feedback(state, tenant):
    session, _ = open_session(state, tenant, "bob")
    kwargs = dict(release_key="releases/x.png", dependent_models=[], actor="owner")
    first = state.releases.accept(tenant, session.session_id, 0, request_id="r1", **kwargs)
    again = state.releases.accept(tenant, session.session_id, 0, request_id="r1", **kwargs)
    assert again.replayed and again.release == first.release
    assert again.charge.entry == first.charge.entry
    assert state.ledger.summary(tenant, "bob").entry_count == 1
    with pytest.raises(FailedPrecondition, match="already accepted"):
        state.releases.accept(tenant, session.session_id, 0, request_id="r2", **kwargs)
    with pytest.raises(FailedPrecondition, match="accepted"):
        state.sessions.record_feedback(tenant, session.session_id, 1, MORE,
                                       next_settings=settings_for(), actor="owner")
    with pytest.raises(FailedPrecondition, match="accepted"):
        state.sessions.close_session(tenant, session.session_id, actor="owner")


def test_a_round_keeps_its_refused_candidates_and_never_releases_one(state, tenant):
    settings = settings_for()
    session = state.sessions.create_session(tenant, "rosa", original=stored("originals/rosa.png"), protect=("Male",),
                                            settings=settings, candidates_per_round=3, seed=7, actor="tester")
    sid = session.session_id
    offered = [dataclasses.replace(c, index=i) for c, i in zip(candidates_for(settings, 2, "v"), (0, 2))]
    refused = RefusedCandidate(1, "face 0 still read Male otherwise than released after 3 decode(s)",
                               ({"action": "FACE_ACTION_ANONYMIZED", "unverified_attributes": ["Male"]},))
    # Out of order, or a gap where the refused candidate should be: refused.
    for wrong, refusals in (([offered[1], offered[0]], [refused]), (offered, [])):
        with pytest.raises(InvalidArgument, match="indexed 0..n-1 in order"):
            state.sessions.add_round(tenant, sid, settings=settings, candidates=wrong, refused=refusals, actor="gw")
    first = state.sessions.add_round(tenant, sid, settings=settings, candidates=offered, refused=[refused],
                                     actor="gw")
    assert state.sessions.latest_round(tenant, sid) == first  # read back as written
    assert [c.index for c in first.candidates] == [0, 2] and first.refused == (refused,)
    with pytest.raises(InvalidArgument, match=r"candidate 1 of round 1 was not offered: face 0 still read Male"):
        state.releases.accept(tenant, sid, 1, request_id="r1", release_key="k", dependent_models=[], actor="owner")
    assert state.releases.accept(tenant, sid, 2, request_id="r2", release_key="k", dependent_models=[],
                                 actor="owner").release.candidate_index == 2


def test_round_rules(state, tenant):
    session, first = open_session(state, tenant, "carol", candidates=2)
    sid = session.session_id
    with pytest.raises(FailedPrecondition, match="no feedback yet"):
        state.sessions.add_round(tenant, sid, settings=first.settings,
                                 candidates=candidates_for(first.settings, 2, "x"), actor="gw")
    nxt = first.settings.with_budget({"Male": 2.0})
    with pytest.raises(FailedPrecondition, match="not the latest"):
        state.sessions.record_feedback(tenant, sid, 2, MORE, next_settings=nxt, actor="owner")
    with pytest.raises(InvalidArgument, match=r"no candidate 2 in round 1; offered: \[0, 1\]"):
        state.releases.accept(tenant, sid, 2, request_id="r", release_key="k",
                              dependent_models=[], actor="owner")
    with pytest.raises(InvalidArgument, match="ReleaseStore.accept"):
        state.sessions.record_feedback(tenant, sid, 1, FeedbackKind.ACCEPT, next_settings=nxt,
                                       actor="owner")
    with pytest.raises(InvalidArgument, match="protects"):
        state.sessions.record_feedback(tenant, sid, 1, MORE, next_settings=settings_for(("Young",)),
                                       actor="owner")
    state.sessions.record_feedback(tenant, sid, 1, FeedbackKind.LESS_PRIVACY, next_settings=nxt,
                                   actor="owner")
    with pytest.raises(FailedPrecondition, match="already answered"):
        state.sessions.record_feedback(tenant, sid, 1, MORE, next_settings=nxt, actor="owner")
    with pytest.raises(FailedPrecondition, match="already answered"):
        state.releases.accept(tenant, sid, 0, request_id="r", release_key="k",
                              dependent_models=[], actor="owner")
    with pytest.raises(InvalidArgument, match="3 candidates"):
        state.sessions.add_round(tenant, sid, settings=nxt,
                                 candidates=candidates_for(nxt, 3, "x"), actor="gw")
    other = settings_for(("Young",))
    with pytest.raises(InvalidArgument, match="protects"):
        state.sessions.add_round(tenant, sid, settings=other,
                                 candidates=candidates_for(other, 1, "x"), actor="gw")
    with pytest.raises(InvalidArgument, match="receipt spends"):
        state.sessions.add_round(tenant, sid, settings=nxt,
                                 candidates=candidates_for(other, 1, "x"), actor="gw")
    with_identity = settings_for(identity=1.0)
    with pytest.raises(InvalidArgument, match="disagree on whether identity"):
        state.sessions.add_round(tenant, sid, settings=nxt,
                                 candidates=candidates_for(with_identity, 1, "x"), actor="gw")
    assert state.sessions.add_round(tenant, sid, settings=nxt, candidates=candidates_for(nxt, 2, "y"),
                                    actor="gw").number == 2
    closed = state.sessions.close_session(tenant, sid, actor="owner")
    assert closed.state is SessionState.CLOSED
    with pytest.raises(FailedPrecondition, match="closed"):
        state.sessions.add_round(tenant, sid, settings=nxt, candidates=candidates_for(nxt, 1, "x"),
                                 actor="gw")


def test_create_session_validation(state, tenant):
    kwargs = dict(original=stored("o.png"), protect=("Male",), settings=settings_for(),
                  candidates_per_round=2, seed=2**64 - 1, actor="a")
    session = state.sessions.create_session(tenant, "dan", **kwargs)
    assert state.sessions.get_session(tenant, session.session_id).seed == 2**64 - 1
    for change, message in [({"candidates_per_round": 9}, "candidates"),
                            ({"seed": 2**64}, "uint64"),
                            ({"protect": ("Young",)}, "protect names"),
                            ({"protect": ()}, "distinct")]:
        with pytest.raises(InvalidArgument, match=message):
            state.sessions.create_session(tenant, "dan", **{**kwargs, **change})
    with pytest.raises(InvalidArgument, match="subject id"):
        state.sessions.create_session(tenant, "", **kwargs)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_epsilon_is_refused_and_budget_unchanged(state, tenant, bad):
    session, _ = open_session(state, tenant, "erin")
    state.releases.accept(tenant, session.session_id, 0, request_id="r", release_key="k",
                          dependent_models=[], actor="owner")
    before = state.ledger.summary(tenant, "erin")
    with pytest.raises(InvalidArgument, match="finite and > 0"):
        PrivacySettings({"Male": bad}, 0.0, 0.0, -1)
    with pytest.raises(InvalidArgument, match="finite and > 0"):
        PrivacySettings({"Male": 1.0}, bad, 0.0, -1) if bad != 0.0 else AttributeSpend(
            "Male", "laplace", bad)
    with pytest.raises(InvalidArgument, match="finite and > 0"):
        state.ledger.charge(tenant, "erin", ReleaseSpend(
            "bad", (AttributeSpend("Male", "randomized_response", bad),)))
    assert state.ledger.summary(tenant, "erin") == before
    assert len(state.ledger.entries(tenant, "erin")) == 1
    # The table refuses a non-positive or non-finite charge even past the API.
    with pytest.raises(sa.exc.IntegrityError), state.db.write() as conn:
        conn.execute(sa.insert(t.ledger_entries).values(
            entry_id=str(uuid.uuid4()), tenant=tenant, subject_id="erin", receipt_id="raw",
            events=[], epsilon=bad, composed_after=0.0, created_at=datetime.now(UTC)))
    assert state.ledger.summary(tenant, "erin") == before


def test_cap_refuses_before_anything_is_charged_or_published(gateway_db, tenant):
    state = GatewayState(gateway_db, ledger=LedgerConfig(cap=1.5, delta=1e-6))
    first, _ = open_session(state, tenant, "frank", eps=1.0)
    second, _ = open_session(state, tenant, "frank", eps=1.0)
    kwargs = dict(release_key="k", dependent_models=["task-cnn"], actor="owner")
    state.releases.accept(tenant, first.session_id, 0, request_id="a", **kwargs)
    before = state.ledger.summary(tenant, "frank")
    with pytest.raises(FailedPrecondition, match=r"would reach composed epsilon .* > cap 1.5"):
        state.releases.accept(tenant, second.session_id, 0, request_id="b", **kwargs)
    assert state.ledger.summary(tenant, "frank") == before
    assert state.sessions.get_session(tenant, second.session_id).state is SessionState.ACTIVE
    assert state.releases.get_release(tenant, second.session_id) is None
    assert state.unlearning.requests_for_session(tenant, second.session_id) == []
    assert state.sessions.latest_round(tenant, second.session_id).feedback is None
    refused = [r for r in state.audit.records(tenant) if r.outcome == "refused"]
    assert len(refused) == 1 and refused[0].target == second.session_id


@pytest.mark.parametrize("mechanism", ["randomized_response", "laplace"])
def test_a_release_of_exactly_remaining_is_admitted(gateway_db, tenant, mechanism):
    """cap 1 after a Laplace eps 0.5: cap minus the composed eps is 0.500002, and randomized
    response at that eps composes past the cap; `remaining` is a value that is admitted."""
    ledger = GatewayState(gateway_db, ledger=LedgerConfig(cap=1.0, delta=1e-6)).ledger
    first = ledger.charge(tenant, "hana", ReleaseSpend("r1", (AttributeSpend("Male", "laplace", 0.5),)))
    remaining = first.summary.remaining
    assert 0.497 <= remaining <= 1.0 - first.summary.composed_epsilon
    assert remaining == round(remaining, 3)  # on the ledger's grid
    second = ledger.charge(tenant, "hana", ReleaseSpend(
        "r2", (AttributeSpend("Male", mechanism, remaining),)))
    assert second.summary.composed_epsilon <= 1.0
    assert second.summary.remaining < 0.01
    assert ledger.summary(tenant, "hana") == second.summary


def test_tenant_isolation(state, tenant):
    session, _ = open_session(state, tenant, "gina")
    sid = session.session_id
    state.releases.accept(tenant, sid, 0, request_id="r", release_key="k",
                          dependent_models=["m"], actor="owner")
    intruder = f"{tenant}-other"
    calls = [
        lambda: state.sessions.get_session(intruder, sid),
        lambda: state.sessions.rounds(intruder, sid),
        lambda: state.sessions.latest_round(intruder, sid),
        lambda: state.sessions.record_feedback(intruder, sid, 1, MORE,
                                               next_settings=settings_for(), actor="x"),
        lambda: state.sessions.close_session(intruder, sid, actor="x"),
        lambda: state.releases.accept(intruder, sid, 0, request_id="r", release_key="k",
                                      dependent_models=[], actor="x"),
        lambda: state.releases.get_release(intruder, sid),
        lambda: state.releases.mark_published(
            intruder, state.releases.get_release(tenant, sid).release_id, actor="x"),
        lambda: state.unlearning.requests_for_session(intruder, sid),
        lambda: state.ledger.summary(intruder, "gina"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert state.sessions.list_sessions(intruder) == ([], "")
    assert state.audit.records(intruder) == []
    assert state.ledger.entries(intruder, "gina") == []


def test_list_sessions_pages_newest_first(state, tenant):
    ids = [open_session(state, tenant, "hank" if i % 2 else "ivy")[0].session_id for i in range(5)]
    page, token = state.sessions.list_sessions(tenant, page_size=2)
    seen = [s.session_id for s in page]
    while token:
        page, token = state.sessions.list_sessions(tenant, page_size=2, page_token=token)
        seen += [s.session_id for s in page]
    assert seen == list(reversed(ids))
    hank, _ = state.sessions.list_sessions(tenant, subject_id="hank")
    assert [s.session_id for s in hank] == [ids[3], ids[1]]
    with pytest.raises(InvalidArgument, match="page token"):
        state.sessions.list_sessions(tenant, page_token="garbage")


def test_idempotency_key_is_honoured_once_across_two_replicas(gateway_db, tenant):
    replica_b = Database.from_config(DatabaseConfig(url=gateway_db.engine.url.render_as_string(False)))
    try:
        store_a, store_b = IdempotencyStore(gateway_db), IdempotencyStore(replica_b)
        fingerprint = sha256_of("request body")
        claim = store_a.claim(tenant, "req-1", "Feedback", fingerprint)
        with pytest.raises(Aborted, match="still being processed"):
            store_b.claim(tenant, "req-1", "Feedback", fingerprint)
        store_a.complete(claim, b"\x01first response")
        assert store_b.claim(tenant, "req-1", "Feedback", fingerprint) == Replay(b"\x01first response")
        assert store_a.claim(tenant, "req-1", "Feedback", fingerprint) == Replay(b"\x01first response")
        with pytest.raises(InvalidArgument, match="different request"):
            store_b.claim(tenant, "req-1", "Feedback", sha256_of("another body"))
        with pytest.raises(InvalidArgument, match="different request"):
            store_b.claim(tenant, "req-1", "CreateSession", fingerprint)
        # The same id under another tenant is another key.
        assert not isinstance(store_b.claim(f"{tenant}-2", "req-1", "Feedback", fingerprint), Replay)
        # An abandoned claim lets a retry run the work again.
        claim = store_a.claim(tenant, "req-2", "Feedback", fingerprint)
        store_a.abandon(claim)
        retry = store_b.claim(tenant, "req-2", "Feedback", fingerprint)
        store_b.complete(retry, b"second")
        assert store_a.claim(tenant, "req-2", "Feedback", fingerprint) == Replay(b"second")
    finally:
        replica_b.dispose()


def test_idempotency_claim_of_a_dead_replica_is_taken_over(gateway_db, tenant):
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    config = IdempotencyConfig(lease_seconds=60, ttl_seconds=3600)
    store = IdempotencyStore(gateway_db, config, clock=lambda: now[0])
    fingerprint = sha256_of("body")
    dead = store.claim(tenant, "req", "Feedback", fingerprint)
    now[0] += timedelta(seconds=61)
    live = store.claim(tenant, "req", "Feedback", fingerprint)
    assert live.token != dead.token
    with pytest.raises(Aborted, match="claim lost"):
        store.complete(dead, b"late")
    store.complete(live, b"ok")
    now[0] += timedelta(hours=2)
    assert store.purge() >= 1
    assert not isinstance(store.claim(tenant, "req", "Feedback", fingerprint), Replay)


def test_audit_log_is_append_only(state, tenant):
    audit_id = state.audit.append(AuditRecord(tenant=tenant, actor="a", action="test.append",
                                              target="t", outcome="ok",
                                              input_sha256=sha256_of("input")))
    state.ledger.charge(tenant, "kim", ReleaseSpend("r", (AttributeSpend("Male", "laplace", 1.0),)))
    for statement in (sa.update(t.audit_log).where(t.audit_log.c.audit_id == audit_id)
                      .values(outcome="forged"),
                      sa.delete(t.audit_log).where(t.audit_log.c.audit_id == audit_id),
                      sa.delete(t.ledger_entries).where(t.ledger_entries.c.tenant == tenant)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), state.db.write() as conn:
            conn.execute(statement)
    if not state.db.is_sqlite:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), state.db.write() as conn:
            conn.execute(sa.text("TRUNCATE gw_audit_log"))
    [record] = state.audit.records(tenant)
    assert record.outcome == "ok" and record.audit_id == audit_id
    with pytest.raises(InvalidArgument, match="bytes is not allowed"):
        AuditRecord(tenant=tenant, actor="a", action="x", target="t", outcome="ok",
                    detail={"image": b"\x89PNG"})
    with pytest.raises(InvalidArgument, match="sha256"):
        AuditRecord(tenant=tenant, actor="a", action="x", target="t", outcome="ok",
                    input_sha256="not-a-hash")


def test_retention_deletes_an_original_once_every_model_is_updated(state, tenant):
    original = f"originals/{uuid.uuid4().hex}.png"
    first, _ = open_session(state, tenant, "jane", original_key=original)
    second, _ = open_session(state, tenant, "jane", original_key=original)

    def due_keys():
        return {(d.tenant, d.original.key) for d in state.retention.originals_due(limit=1000)}

    accepted = state.releases.accept(tenant, first.session_id, 0, request_id="r", release_key="k1",
                                     dependent_models=[f"m1-{tenant}", f"m2-{tenant}"],
                                     actor="owner")
    state.releases.mark_published(tenant, accepted.release.release_id, actor="gw")
    batches = [state.unlearning.claim_batch(tenant, f"{m}-{tenant}", 100) for m in ("m1", "m2")]
    assert (tenant, original) not in due_keys()
    state.unlearning.mark_done(batches[0].batch_id)
    assert (tenant, original) not in due_keys()          # m2 not updated yet
    state.unlearning.mark_failed(batches[1].batch_id, "diverged", retry=True)
    retried = state.unlearning.claim_batch(tenant, f"m2-{tenant}", 100)
    assert [r.attempts for r in retried.requests] == [2]
    state.unlearning.mark_done(retried.batch_id)
    assert (tenant, original) not in due_keys()          # the second session is still active
    state.sessions.close_session(tenant, second.session_id, actor="owner")
    # Another tenant's release with its unlearning still queued holds back nothing of this one.
    bystander, _ = open_session(state, f"{tenant}-b", "kay")
    state.releases.accept(f"{tenant}-b", bystander.session_id, 0, request_id="rb", release_key="kb",
                          dependent_models=[f"m3-{tenant}"], actor="owner")
    [due] = [d for d in state.retention.originals_due(limit=1000) if d.original.key == original]
    # The closed session released nothing; its original goes with the accepted one's.
    assert set(due.session_ids) == {first.session_id, second.session_id}
    assert state.retention.mark_original_deleted(tenant, original, due.finished_at, actor="retention") == 2
    assert (tenant, original) not in due_keys()
    assert state.sessions.get_session(tenant, first.session_id).original_deleted_at is not None


def test_retention_deletes_the_original_of_a_closed_session(state, tenant):
    original = f"originals/{uuid.uuid4().hex}.png"
    session, _ = open_session(state, tenant, "joan", original_key=original)

    def due() -> list:
        return [d for d in state.retention.originals_due(limit=1000) if d.original.key == original]

    assert due() == []                                   # still active
    closed = state.sessions.close_session(tenant, session.session_id, actor="owner")
    [item] = due()
    assert item.session_ids == (session.session_id,) and item.finished_at == closed.updated_at
    state.retention.mark_original_deleted(tenant, original, item.finished_at, actor="retention")
    assert due() == []


def test_gateway_state_from_env_migrates_the_embedded_database(tmp_path):
    environ = {"VEIL_DATABASE_URL": f"sqlite:///{tmp_path}/embedded/veil.db",
               "VEIL_LEDGER_CAP": "4.5", "VEIL_LEDGER_DELTA": "1e-7", "VEIL_EPS_MAX": "8",
               "VEIL_RETENTION_POLICY": "keep"}
    state = GatewayState.from_env(environ, migrate_schema=True)
    try:
        assert (state.ledger.config.cap, state.ledger.config.delta) == (4.5, 1e-7)
        assert state.controller.eps_max == 8.0
        session, _ = open_session(state, "tenant", "subject")
        assert state.sessions.get_session("tenant", session.session_id).round_count == 1
        assert state.retention.originals_due() == []
    finally:
        state.close()
    with pytest.raises(ConfigError, match="VEIL_LEDGER_CAP"):
        GatewayState.from_env({**environ, "VEIL_LEDGER_CAP": "0"})
    with pytest.raises(ConfigError, match="VEIL_RETENTION_POLICY"):
        GatewayState.from_env({**environ, "VEIL_RETENTION_POLICY": "sometimes"})


@pytest.fixture(params=["postgresql", "sqlite"])
def url_at_0002(request, tmp_path) -> str:
    if request.param == "postgresql":
        url = request.getfixturevalue("make_pg_database")()
    else:
        url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    migrate(SERVICE, engine, "0002")
    engine.dispose()
    return url


def test_migration_merges_the_spellings_of_a_subject(url_at_0002, tenant):
    """Data written before subject ids were canonical: two spellings of one subject become one
    ledger (its budget counts both), images are bound to their first session's subject, and an
    id with no canonical form is left as it was."""
    db = Database.from_config(DatabaseConfig(url=url_at_0002))
    old = GatewayState(db, ledger=LedgerConfig(cap=10.0, delta=1e-6))
    spends = {"CAP-x": 1.0, "cap-x ": 2.0, "alice smith": 0.5}
    sessions = {}
    # Today's code writes the old rows: the column a later migration adds to a table it reads is
    # there while it writes (holding nothing), and gone again before the migrations run.
    with db.write() as conn:
        conn.execute(sa.text("ALTER TABLE gw_rounds ADD COLUMN refused TEXT"))
    for subject, eps in spends.items():
        sessions[subject], _ = open_session(old, tenant, subject, eps=eps)
        old.releases.accept(tenant, sessions[subject].session_id, 0, request_id=subject,
                            release_key="k", dependent_models=[], actor="owner")
    with db.write() as conn:
        conn.execute(sa.text("ALTER TABLE gw_rounds DROP COLUMN refused"))
    migrate(SERVICE, db.engine)
    state = GatewayState(db, ledger=LedgerConfig(cap=10.0, delta=1e-6))
    merged = state.ledger.summary(tenant, "cap-x")
    assert merged.entry_count == 2 and merged.sum_epsilon == pytest.approx(3.0)
    both = [e for entry in state.ledger.entries(tenant, "cap-x") for e in entry.events]
    assert merged.composed_epsilon == pytest.approx(compose(both, 1e-6).composed_epsilon)
    for spelling in ("CAP-x", "cap-x "):
        with pytest.raises(NotFound):
            state.ledger.summary(tenant, spelling)
        assert state.sessions.get_session(tenant, sessions[spelling].session_id).subject_id == "cap-x"
        assert state.releases.get_release(tenant, sessions[spelling].session_id).subject_id == "cap-x"
    assert state.ledger.summary(tenant, "alice smith").entry_count == 1
    with pytest.raises(FailedPrecondition, match="belongs to subject 'cap-x'"):
        state.upload_subjects.bind(tenant, sessions["CAP-x"].original.sha256, "cap-x-2")
    state.upload_subjects.bind(tenant, sessions["cap-x "].original.sha256, "cap-x")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.write() as conn:
        conn.execute(sa.update(t.ledger_entries).values(subject_id="x"))
    db.dispose()


def test_a_round_lease_has_one_holder_until_it_expires(gateway_db, tenant):
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    state = GatewayState(gateway_db, clock=lambda: now[0])
    session, _ = open_session(state, tenant, "ivan")
    leases, sid, ttl = state.round_leases, session.session_id, timedelta(seconds=3)
    assert leases.take(sid, 2, "a", ttl)
    assert not leases.take(sid, 2, "b", ttl)
    now[0] += timedelta(seconds=2)
    assert leases.renew(sid, "a", ttl) and not leases.take(sid, 2, "b", ttl)
    now[0] += timedelta(seconds=3.5)             # a stopped renewing: it died
    assert leases.take(sid, 2, "b", ttl)
    assert not leases.renew(sid, "a", ttl) and not leases.take(sid, 2, "a", ttl)
    leases.drop(sid, "a")                        # a late drop of a lost lease changes nothing
    assert not leases.take(sid, 2, "c", ttl)
    leases.drop(sid, "b")
    assert leases.take(sid, 3, "c", ttl)


def test_a_renewed_request_claim_outlives_its_lease(gateway_db, tenant):
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    keys = IdempotencyStore(gateway_db, IdempotencyConfig(lease_seconds=3.0), clock=lambda: now[0])
    claim = keys.claim(tenant, "req", "Feedback", "0" * 64)
    for _ in range(3):
        now[0] += timedelta(seconds=2)
        keys.renew(claim)
        with pytest.raises(Aborted, match="still being processed"):
            keys.claim(tenant, "req", "Feedback", "0" * 64)
    now[0] += timedelta(seconds=3.5)             # the renewals stopped: its replica died
    assert keys.claim(tenant, "req", "Feedback", "0" * 64) != claim
