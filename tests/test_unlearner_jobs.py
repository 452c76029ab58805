"""The unlearner's job table and runner in-process, on PostgreSQL and SQLite: migrations, claims
(exclusive, one job of a model at a time), leases that expire and are resumed or given up, and a
resumed job that finds the version its dead attempt wrote."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from prometheus_client import REGISTRY
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fixtures_services import upload_dataset

from services.unlearner.config import UnlearnerConfig
from services.unlearner.jobs import JobRunner, Monitor, execute
from services.unlearner.jobstore import JobKind, JobState, JobStore, NewJob, Progress
from services.unlearner.specs import TrainSpec
from services.unlearner.tables import SERVICE, metadata
from services.unlearner.tables import jobs as jobs_table
from veil.db import Database, DatabaseConfig, create_engine, migrate
from veil.errors import InvalidArgument
from veil.store import open_store
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.params import TrainConfig
from veil.unlearning.registry import ModelRegistry
from veil.unlearning.training import fit, initialise
from veil.unlearning.verification import VerificationPolicy

ROOT = Path(__file__).resolve().parent.parent
LEASE = 60.0


class Clock:
    """A settable UTC clock: leases expire when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, make_pg_database, tmp_path) -> str:
    url = make_pg_database() if request.param == "postgresql" else f"sqlite:///{tmp_path}/ul.db"
    engine = create_engine(DatabaseConfig(url=url))
    migrate(SERVICE, engine)
    engine.dispose()
    return url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    database = Database.from_config(DatabaseConfig(url=db_url))
    yield database
    database.dispose()


def new_job(model: str = "faces", kind: JobKind = JobKind.UNLEARN) -> NewJob:
    return NewJob(kind, model, {"what": model}, method="second" if kind is JobKind.UNLEARN else None)


def test_migrations_apply_idempotently_and_match_the_tables(make_pg_database, tmp_path):
    for url in (make_pg_database(), f"sqlite:///{tmp_path}/m.db"):
        engine = create_engine(DatabaseConfig(url=url))
        assert migrate(SERVICE, engine) == "0001" and migrate(SERVICE, engine) == "0001"
        assert set(sa.inspect(engine).get_table_names()) == {"ul_jobs", "alembic_version_unlearner"}
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: kind != "table" or name.startswith("ul_")})
            assert compare_metadata(context, metadata) == [], url
        engine.dispose()
    done = subprocess.run([sys.executable, "-m", "veil.db", "migrate", "--service", "unlearner"],
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "VEIL_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "unlearner: database at revision 0001", done.stderr


def test_a_request_id_makes_one_job_per_tenant(db):
    jobs = JobStore(db)
    first, created = jobs.create("t1", "req-1", new_job())
    again, created_again = jobs.create("t1", "req-1", new_job("other"))
    assert created and not created_again and again == first and again.model == "faces"
    elsewhere, created_elsewhere = jobs.create("t2", "req-1", new_job())
    assert created_elsewhere and elsewhere.job_id != first.job_id
    assert jobs.by_request("t1", "req-1", JobKind.UNLEARN) == first
    assert jobs.by_request("t1", "req-2", JobKind.UNLEARN) is None
    with pytest.raises(InvalidArgument, match="already names unlearn job"):
        jobs.create("t1", "req-1", new_job(kind=JobKind.TRAIN))
    assert (first.state, first.attempts, first.progress) == (JobState.QUEUED, 0, Progress("queued"))


def test_concurrent_claims_are_exclusive_and_one_job_of_a_model_runs_at_a_time(db):
    jobs = JobStore(db)
    a = jobs.create("t1", "a", new_job("faces"))[0]
    b = jobs.create("t1", "b", new_job("faces"))[0]
    c = jobs.create("t1", "c", new_job("cars"))[0]
    d = jobs.create("t2", "d", new_job("faces"))[0]  # another tenant's model of the same name
    barrier, claimed = threading.Barrier(4), []

    def claim() -> None:
        barrier.wait()
        claimed.append(jobs.claim("runner", LEASE, 3).job)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    got = sorted(j.job_id for j in claimed if j is not None)
    assert got == sorted([a.job_id, c.job_id, d.job_id]) and claimed.count(None) == 1
    running = jobs.get("t1", a.job_id)
    assert (running.state, running.attempts, running.progress.stage) == (JobState.RUNNING, 1, "starting")
    assert jobs.claim("runner", LEASE, 3).job is None  # b waits for a
    assert jobs.succeed(running, "v2").result_version == "v2"
    assert jobs.claim("runner", LEASE, 3).job.job_id == b.job_id


def test_an_expired_lease_is_taken_over_and_then_given_up(db):
    clock = Clock()
    jobs = JobStore(db, clock)
    job = jobs.create("t1", "a", new_job())[0]
    first = jobs.claim("dead", LEASE, 2)
    assert jobs.heartbeat(first.job, Progress("solve", 3, 10), LEASE)
    clock.advance(LEASE - 1)
    assert jobs.claim("other", LEASE, 2).job is None  # the lease still holds
    clock.advance(2)
    second = jobs.claim("other", LEASE, 2)
    assert second.resumed and second.job.job_id == job.job_id and second.job.attempts == 2
    assert second.job.lease_owner != first.job.lease_owner
    # The first runner lost the job: nothing it does changes it.
    assert not jobs.heartbeat(first.job, Progress("solve", 4, 10), LEASE)
    assert jobs.succeed(first.job, "v9") is None and jobs.fail(first.job, "late") is None
    clock.advance(LEASE + 1)
    third = jobs.claim("third", LEASE, 2)
    assert third.job is None and [j.job_id for j in third.given_up] == [job.job_id]
    failed = jobs.get("t1", job.job_id)
    assert failed.state is JobState.FAILED and failed.attempts == 2 and failed.finished_at == clock.now
    assert "interrupted 2 time(s)" in failed.error and "last progress: starting" in failed.error


def test_a_released_job_waits_its_delay_and_a_shutdown_keeps_its_attempt(db):
    clock = Clock()
    jobs = JobStore(db, clock)
    jobs.create("t1", "a", new_job())
    held = jobs.claim("r", LEASE, 3).job
    assert jobs.release(held, delay_seconds=30, error="Unavailable: store down", consume_attempt=True)
    queued = jobs.get("t1", held.job_id)
    assert (queued.state, queued.attempts, queued.error) == (JobState.QUEUED, 1, "Unavailable: store down")
    clock.advance(29)
    assert jobs.claim("r", LEASE, 3).job is None
    clock.advance(2)
    held = jobs.claim("r", LEASE, 3).job
    assert held.attempts == 2
    assert jobs.release(held, delay_seconds=0, error=None, consume_attempt=False)
    assert jobs.get("t1", held.job_id).attempts == 1
    assert jobs.count(JobState.QUEUED) == 1


def fast_config(**overrides) -> UnlearnerConfig:
    return UnlearnerConfig(**{"poll_seconds": 0.05, "lease_seconds": 1.0, "heartbeat_seconds": 0.1,
                              **overrides})


def train_job(store, faces, epochs: int) -> NewJob:
    manifest, key = upload_dataset(store, faces)
    spec = TrainSpec(key, manifest.sha256, TrainConfig(epochs=epochs), (4, 8), 16)
    return NewJob(JobKind.TRAIN, "faces", spec.to_json())


async def until(condition, timeout: float = 60.0) -> None:
    """Return once condition() (run in a thread) is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_resumed_job_records_the_version_its_dead_attempt_wrote(make_pg_database, services_store,
                                                                   tiny_faces):
    """The attempt died after writing the card but before recording the job as done: the next
    attempt finds the version by the job id in its card and does not write another."""
    db = Database.from_config(DatabaseConfig(url=make_pg_database()))
    migrate(SERVICE, db.engine)
    jobs, store, tenant = JobStore(db), open_store(services_store), f"ul-{uuid.uuid4().hex[:8]}"
    job = jobs.create(tenant, "r1", train_job(store.for_tenant(tenant), tiny_faces, epochs=1))[0]
    dead = jobs.claim("dead", 0.3, 3).job
    assert execute(store, jobs, dead, Monitor(threading.Event(), time_limit_seconds=60.0),
                   VerificationPolicy()) == "v1"
    runner = JobRunner(jobs, store, fast_config())

    async def scenario() -> None:
        runner.start()
        await until(lambda: jobs.get(tenant, job.job_id).state.terminal)
        await runner.stop(10)

    asyncio.run(scenario())
    done = jobs.get(tenant, job.job_id)
    assert (done.state, done.result_version, done.attempts) == (JobState.SUCCEEDED, "v1", 2)
    registry = ModelRegistry(store.for_tenant(tenant))
    assert registry.versions("faces") == ["v1"] and registry.card("faces").job_id == job.job_id
    db.dispose()


def test_a_runner_that_loses_its_lease_stops_and_records_nothing(make_pg_database, services_store,
                                                                tiny_faces, caplog):
    db = Database.from_config(DatabaseConfig(url=make_pg_database()))
    migrate(SERVICE, db.engine)
    jobs, store, tenant = JobStore(db), open_store(services_store), f"ul-{uuid.uuid4().hex[:8]}"
    job = jobs.create(tenant, "r1", train_job(store.for_tenant(tenant), tiny_faces, epochs=500))[0]
    runner = JobRunner(jobs, store, fast_config(lease_seconds=3.0))

    def running() -> float | None:
        return REGISTRY.get_sample_value("veil_unlearning_jobs_running", {"kind": "train"})

    async def scenario() -> None:
        runner.start()
        await until(lambda: jobs.get(tenant, job.job_id).progress.stage == "train")
        with db.write() as conn:  # another runner's claim, as after an expiry of the lease
            conn.execute(sa.update(jobs_table).where(jobs_table.c.job_id == job.job_id).values(
                lease_owner="thief", lease_expires_at=datetime.now(UTC) + timedelta(hours=1)))
        await until(lambda: running() == 0)  # the heartbeat saw it and the work stopped
        await runner.stop(10)

    asyncio.run(scenario())
    assert "lease lost to another runner" in caplog.text
    stolen = jobs.get(tenant, job.job_id)
    assert (stolen.state, stolen.lease_owner, stolen.result_version) == (JobState.RUNNING, "thief", None)
    assert stolen.progress.stage == "train" and 0 < stolen.progress.step < 500
    assert ModelRegistry(store.for_tenant(tenant)).versions("faces") == []
    db.dispose()


def test_seeded_training_in_concurrent_workers_is_what_it_is_alone():
    """Job workers are threads of one process: training a seed concurrently with another job
    gives the same weights as training it alone (the global generator is not shared mid-way)."""
    images = torch.rand(24, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5
    targets = (images.mean(dim=(1, 2, 3)) > 0).float().reshape(-1, 1)
    spec = ClassifierSpec(image_size=8, num_outputs=1, channels=(4,), embedding_dim=8)

    def trained(seed: int) -> dict[str, torch.Tensor]:
        model = initialise(lambda: build_classifier(spec), seed)
        fit(model, images, targets, TrainConfig(seed=seed, epochs=8, batch_size=8))
        return model.state_dict()

    alone = {seed: trained(seed) for seed in (1, 2)}
    seeds = [1, 2] * 4
    with ThreadPoolExecutor(len(seeds)) as pool:
        together = list(pool.map(trained, seeds))
    for seed, weights in zip(seeds, together):
        assert all(torch.equal(weights[k], alone[seed][k]) for k in weights)
    assert not torch.equal(alone[1]["head.weight"], alone[2]["head.weight"])


def test_a_job_that_finds_the_store_unavailable_is_retried_later(make_pg_database, private_nanio,
                                                                  tiny_faces):
    db = Database.from_config(DatabaseConfig(url=make_pg_database()))
    migrate(SERVICE, db.engine)
    store = open_store(private_nanio.config(s3_retry_deadline_seconds=1.0))
    store.ensure_bucket()
    jobs, tenant = JobStore(db), f"ul-{uuid.uuid4().hex[:8]}"
    job = jobs.create(tenant, "r1", train_job(store.for_tenant(tenant), tiny_faces, epochs=1))[0]
    retried = REGISTRY.get_sample_value("veil_unlearning_jobs_retried_total", {"kind": "train"})
    runner = JobRunner(jobs, store, fast_config(retry_seconds=0.5))

    async def scenario() -> None:
        private_nanio.stop()
        runner.start()
        await until(lambda: jobs.get(tenant, job.job_id).error is not None)
        waiting = jobs.get(tenant, job.job_id)
        assert (waiting.state, waiting.attempts) == (JobState.QUEUED, 1)
        assert waiting.error.startswith("Unavailable: ")
        private_nanio.start()
        await until(lambda: jobs.get(tenant, job.job_id).state.terminal)
        await runner.stop(10)

    asyncio.run(scenario())
    done = jobs.get(tenant, job.job_id)
    assert (done.state, done.attempts, done.result_version) == (JobState.SUCCEEDED, 2, "v1")
    assert REGISTRY.get_sample_value("veil_unlearning_jobs_retried_total", {"kind": "train"}) == retried + 1
    db.dispose()
