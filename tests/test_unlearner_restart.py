"""The unlearner killed (SIGKILL) or stopped (SIGTERM) in the middle of a job, then started again
on the same database: the job resumes and succeeds, or fails cleanly once out of attempts, and no
half-written version is ever visible."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fixtures_services import (ServiceFactory, ServiceProcess, UnlearnerCaller, mirrored,
                               pair_message, train_request, upload_dataset, wait_for)

from services.unlearner.tables import jobs as jobs_table
from veil.store import ObjectStore, open_store
from veil.unlearning.manifest import Manifest
from veil.unlearning.registry import ModelRegistry
from veil.v1 import unlearner_pb2 as pb

# An epoch of the tiny faces takes about 10 ms on a 2-core machine: a slow job lasts seconds, so
# that the heartbeat (every 0.2 s) shows it running long before it ends; a job that never finishes
# can be much longer.
SLOW_EPOCHS, ENDLESS_EPOCHS = 400, 5000


def job_row(service: ServiceProcess, job_id: str):
    """The job's row, read as an operator would while the service is down."""
    engine = sa.create_engine(service.env["VEIL_DATABASE_URL"])
    with engine.connect() as conn:
        row = conn.execute(sa.select(jobs_table).where(jobs_table.c.job_id == job_id)).one()
    engine.dispose()
    return row


def running_at_epoch(call: UnlearnerCaller, job_id: str, epoch: int) -> pb.Job:
    """The job once it has recorded progress past `epoch` (its heartbeat wrote it to the table)."""
    return wait_for(lambda: (job := call.GetJob(pb.GetJobRequest(job_id=job_id))).state
                    == pb.JOB_STATE_RUNNING and job.progress.step >= epoch and job,
                    60, f"job {job_id} to pass epoch {epoch}")


def tenant_with_data(services_store, tiny_faces) -> tuple[str, ObjectStore, Manifest, str]:
    """A new tenant, its store, and the tiny faces' manifest there with its key."""
    tenant = f"ul-restart-{uuid.uuid4().hex[:8]}"
    store = open_store(services_store).for_tenant(tenant)
    return (tenant, store, *upload_dataset(store, tiny_faces))


def test_a_job_killed_mid_run_resumes_and_writes_its_version_once(
        unlearners: ServiceFactory, services_store, tiny_faces):
    tenant, store, manifest, key = tenant_with_data(services_store, tiny_faces)
    service = unlearners()
    call = UnlearnerCaller(service.target, tenant)
    job = call.Train(train_request(key, manifest, epochs=SLOW_EPOCHS, request_id="train-slow"))
    running_at_epoch(call, job.job_id, 2)
    service.kill()

    row = job_row(service, job.job_id)
    assert (row.state, row.attempts, row.result_version) == ("running", 1, None)
    assert ModelRegistry(store).versions("faces") == []
    assert list(store.list("models/")) == []  # no weights, manifest or card of a version

    service.start()
    done = call.wait(job.job_id, timeout=120)
    assert (done.state, done.attempts, done.result_version) == (pb.JOB_STATE_SUCCEEDED, 2, "v1"), done.error
    assert call.Train(train_request(key, manifest, request_id="train-slow")).job_id == job.job_id
    registry = ModelRegistry(store)
    assert registry.versions("faces") == ["v1"] and registry.card("faces").job_id == job.job_id
    assert service.metric("veil_unlearning_jobs_resumed_total", kind="train") == 1
    assert service.metric("veil_unlearning_jobs_total", kind="train", outcome="succeeded") == 1
    call.close()


def test_sigterm_requeues_a_job_and_a_job_out_of_attempts_fails_cleanly_after_a_kill(
        unlearners: ServiceFactory, services_store, tiny_faces):
    tenant, store, manifest, key = tenant_with_data(services_store, tiny_faces)
    service = unlearners(VEIL_UNLEARNER_MAX_ATTEMPTS="1")
    call = UnlearnerCaller(service.target, tenant)

    # SIGTERM: the running job goes back to the queue and keeps its only attempt.
    job = call.Train(train_request(key, manifest, epochs=SLOW_EPOCHS))
    running_at_epoch(call, job.job_id, 2)
    service.stop()
    assert service.process.returncode == 0
    row = job_row(service, job.job_id)
    assert (row.state, row.attempts, row.lease_owner) == ("queued", 0, None)
    assert ModelRegistry(store).versions("faces") == []
    service.start()
    done = call.wait(job.job_id, timeout=120)
    assert (done.state, done.attempts, done.result_version) == (pb.JOB_STATE_SUCCEEDED, 1, "v1"), done.error

    # SIGKILL with no attempt left: the job fails with a clear error and writes nothing.
    entry = manifest.train[0]
    pair = pair_message(entry.object, mirrored(store, entry), "session-doomed")
    job = call.Unlearn(pb.UnlearnRequest(model="faces", pairs=[pair], method=pb.UNLEARN_METHOD_FINE_TUNE,
                                         params=pb.UnlearnParams(epochs=ENDLESS_EPOCHS)))
    running_at_epoch(call, job.job_id, 2)
    service.kill()
    service.start()
    done = call.wait(job.job_id, timeout=60)
    assert (done.state, done.attempts, done.result_version) == (pb.JOB_STATE_FAILED, 1, "")
    assert "interrupted 1 time(s)" in done.error and "used up its 1 attempt(s)" in done.error
    assert done.base_version == "v1" and list(done.session_ids) == ["session-doomed"]
    assert ModelRegistry(store).versions("faces") == ["v1"]
    assert list(store.list("models/faces/v2")) == []
    assert service.metric("veil_unlearning_jobs_total", kind="unlearn", outcome="failed") == 1
    call.close()
