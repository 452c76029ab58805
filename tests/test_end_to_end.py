"""The product end to end (issue 6's acceptance): the anonymizer, the unlearner and a gateway as
processes on loopback, the S3 backend on nanio, PostgreSQL. A published model is trained through
the unlearner on a data set holding the original; the data owner runs a session on that original
(two rounds, then accept); the gateway's unlearning dispatcher has the unlearner write a new model
version that names the session, charges the ledger, audits every step, and deletes the original
once the model no longer depends on it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from fixtures_db import migrated
from fixtures_services import (ServiceFactory, UnlearnerCaller, failure, gateway_base_env,
                               gateway_factory_of, train_request, upload_dataset, wait_for)

from veil.db import Database, DatabaseConfig
from veil.errors import NotFound
from services.gateway.state import GatewayState, UnlearningStatus
from veil.store import open_store
from veil.unlearning.manifest import Manifest
from veil.v1 import common_pb2, gateway_pb2
from veil.v1 import unlearner_pb2 as pb


@pytest.fixture
def own_gateways(anonymizer_service, services_store, make_pg_database, tokens_file,
                 services_logs) -> Iterator[tuple[ServiceFactory, GatewayState]]:
    """Gateways on a database of their own (their dispatcher sends every tenant's unlearning
    requests to this test's unlearner), and that database's state for the test to read."""
    url = migrated(make_pg_database())
    factory = gateway_factory_of(gateway_base_env(anonymizer_service, services_store, url, tokens_file),
                                 services_logs / "end-to-end")
    state = GatewayState(Database.from_config(DatabaseConfig(url=url)))
    yield factory, state
    factory.stop_all()
    state.close()


def test_session_accept_unlearns_the_original_from_the_published_model(
        own_gateways, unlearners, services_store, tiny_faces, new_tenant):
    gateways, state = own_gateways
    tenant = new_tenant()
    store = open_store(services_store).for_tenant(tenant)
    manifest, manifest_key = upload_dataset(store, tiny_faces)
    original = manifest.train[5].object

    # The published model: trained through the unlearner on a data set holding the original.
    unlearner = unlearners()
    call = UnlearnerCaller(unlearner.target, tenant)
    trained = call.wait(call.Train(train_request(manifest_key, manifest, epochs=2)).job_id)
    assert (trained.state, trained.result_version) == (pb.JOB_STATE_SUCCEEDED, "v1"), trained.error

    gateway = gateways(VEIL_UNLEARNER_TARGET=unlearner.target)
    with gateway.client(tenant) as client:
        session = client.create_session(
            "alice", common_pb2.ObjectRef(key=original.key, sha256=original.sha256),
            protect=["Male"], level=5, candidates=2)
        sid = session.session_id
        second = client.feedback(sid, "more")
        assert second.round.number == 2
        accepted = client.feedback(sid, "accept", candidate=1)
        release = accepted.release
        assert accepted.session.state == gateway_pb2.SESSION_STATE_ACCEPTED
        assert len(release.unlearning_request_ids) == 1  # one dependent model: faces

        # The dispatcher submits the release to the unlearner; the job writes v2.
        [request] = wait_for(lambda: [r for r in state.unlearning.requests_for_session(tenant, sid)
                                      if r.status is UnlearningStatus.DONE], 120,
                             "the unlearning request to be done")
        job = call.GetJob(pb.GetJobRequest(job_id=request.job_id))
        assert (job.state, job.kind, job.base_version, job.result_version) == (
            pb.JOB_STATE_SUCCEEDED, "unlearn", "v1", "v2"), job.error
        assert list(job.session_ids) == [sid]

        # Retention: the original is deleted once the model is updated.
        wait_for(lambda: client.get_session(sid).original.url == "", 60, "the original's deletion")
        with pytest.raises(NotFound):
            store.stat(original.key)
        assert failure(client.download, session.original.object).code() == grpc.StatusCode.NOT_FOUND
        ledger = client.ledger("alice")

    # The new version names the session and no longer holds the original.
    child = call.GetModel(pb.GetModelRequest(model="faces"))
    card = json.loads(child.card_json)
    assert (child.version, child.parent_version, list(child.lineage)) == ("v2", "v1", ["v1", "v2"])
    assert card["session_ids"] == [sid] and card["method"] == "second" and card["pairs"] == 1
    revised = Manifest.from_bytes(store.get(child.manifest.key, expected_sha256=child.manifest_sha256))
    keys = {e.object.key for e in revised.train}
    assert original.key not in keys and release.image.object.key in keys
    assert not call.ListDependentModels(pb.ListDependentModelsRequest(sha256=[original.sha256])).versions

    # The ledger charged the release once; the audit log holds every step, the deletion last.
    [entry] = ledger.entries
    assert entry.session_id == sid and entry.receipt_id == release.receipt.receipt_id
    assert ledger.summary.composed_epsilon > 0
    assert ledger.summary.composed_epsilon == pytest.approx(release.ledger.composed_epsilon)
    actions = [(r.action, r.outcome) for r in state.audit.records(tenant, limit=100)]
    assert actions == [("session.create", "ok"), ("round.add", "ok"), ("round.feedback", "ok"),
                       ("round.add", "ok"), ("release.accept", "charged"), ("release.publish", "ok"),
                       ("original.delete", "ok")]
    assert gateway.metric("veil_gateway_unlearning_jobs_total", outcome="succeeded") == 1
    assert unlearner.metric("veil_unlearning_jobs_total", kind="unlearn", outcome="succeeded") == 1
    call.close()
