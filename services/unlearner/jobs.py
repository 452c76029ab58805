"""The job runner: VEIL_UNLEARNER_WORKERS workers (asyncio tasks) claim jobs from the job table
(services.unlearner.jobstore) and run each one's torch work in a thread of their own.

While a job runs, a heartbeat renews its lease and records its progress every
VEIL_UNLEARNER_HEARTBEAT_SECONDS. If the process dies, the lease expires and a worker (of this
process after a restart, or of another replica) claims the job again and runs it from the start:
the registry makes a version visible only when its card is written, last, so the dead attempt
published nothing, unless it died between writing the card and recording the job as done; the
card names the job, so the new attempt finds that version and records it instead of writing a
second one.

How an attempt ends:
- the version is written and published: SUCCEEDED;
- the version is written but its update failed verification under VEIL_UNLEARNER_VERIFY_POLICY:
  it stays unpublished ("unverified") and the job is FAILED with the reason;
- an unavailable dependency (object store, database): QUEUED again after VEIL_UNLEARNER_RETRY_SECONDS
  while attempts are left, else FAILED;
- any other error (bad input found while running, a diverging solve, a bug): FAILED with the error;
- the attempt ran past VEIL_UNLEARNER_JOB_TIME_LIMIT_SECONDS: the work stops at its next progress
  report, FAILED saying so;
- the job was cancelled (CancelJob ends its row CANCELLED, which takes the lease away): the work
  stops at its next progress report after the next heartbeat, nothing is recorded;
- the service shuts down: the work stops at its next progress report and the job is QUEUED again
  without using up an attempt;
- the lease was lost (another runner took the job over, or it was cancelled): the work stops,
  nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from services.unlearner import metrics
from services.unlearner.config import UnlearnerConfig
from services.unlearner.jobstore import JobKind, JobRecord, JobState, JobStore, Progress
from services.unlearner.specs import TrainSpec, UnlearnSpec
from veil.errors import Aborted, Unavailable, VeilError
from veil.store import ObjectStore
from veil.unlearning import workflow
from veil.unlearning.registry import ModelRegistry
from veil.unlearning.verification import VerificationPolicy

log = logging.getLogger("services.unlearner.jobs")

# Writing an attempt's end to the database: tries and the first pause (doubling).
SETTLE_TRIES, SETTLE_BACKOFF_SECONDS = 5, 0.5


class JobInterrupted(Exception):
    """Stops a job's work from inside (its progress callback): the service is shutting down, or
    the job's lease was lost."""


class Monitor:
    """Shared by a job's thread (which reports progress) and the event loop (heartbeat, stop)."""

    def __init__(self, stopping: threading.Event, time_limit_seconds: float) -> None:
        self._stopping = stopping
        self._time_limit = time_limit_seconds
        self._deadline = time.monotonic() + time_limit_seconds
        self._lock = threading.Lock()
        self._progress = Progress("starting")
        self.lost = threading.Event()

    @property
    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    def report(self, stage: str, step: int, total: int) -> None:
        """The library's progress callback; raises JobInterrupted when the job must stop."""
        with self._lock:
            self._progress = Progress(stage, step, total)
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            raise JobInterrupted("the job's lease was lost (it was cancelled or another runner took it)")
        if self._stopping.is_set():
            raise JobInterrupted("the unlearner is shutting down")
        if time.monotonic() > self._deadline:
            raise Aborted(f"the job ran past its time limit of {self._time_limit:g} s "
                          "(VEIL_UNLEARNER_JOB_TIME_LIMIT_SECONDS)")


def execute(store: ObjectStore, jobs: JobStore, job: JobRecord, monitor: Monitor,
            verification: VerificationPolicy) -> str:
    """Do `job`'s work in the calling thread; returns the version it wrote (or that an earlier
    attempt of it wrote). An update refused by `verification` raises FailedPrecondition."""
    registry = ModelRegistry(store.for_tenant(job.tenant))
    # Only an earlier attempt can have written the version (and died before recording it).
    written = registry.version_of_job(job.model, job.job_id) if job.attempts > 1 else None
    if written is not None:
        log.info("job %s: an earlier attempt already wrote %s %s", job.job_id, job.model, written.version)
        if not written.published:
            workflow.raise_unverified(written)
        return written.version
    if job.kind is JobKind.TRAIN:
        spec = TrainSpec.from_json(job.spec)
        card = workflow.train(registry, model=job.model, manifest_key=spec.manifest_key,
                              manifest_sha256=spec.manifest_sha256, config=spec.config,
                              channels=spec.channels, embedding_dim=spec.embedding_dim,
                              progress=monitor.report, job_id=job.job_id)
        return card.version
    spec = UnlearnSpec.from_json(job.spec)
    # "The newest version" is decided when the job starts: updates of one model run one after
    # another (jobstore.claim), so each builds on the version the previous one wrote.
    base = job.requested_version or registry.card(job.model).version
    if not jobs.record_base(job, base):
        monitor.lost.set()
        monitor.check()
    card = workflow.unlearn(registry, model=job.model, version=base, pairs=spec.pairs,
                            method=job.method or "", params=spec.params, progress=monitor.report,
                            job_id=job.job_id, verification=verification)
    return card.version


@dataclass(frozen=True)
class _Outcome:
    version: str | None = None  # succeeded
    error: str | None = None    # failed, or retried when `retry`
    retry: bool = False
    interrupted: bool = False


class JobRunner:
    def __init__(self, jobs: JobStore, store: ObjectStore, config: UnlearnerConfig) -> None:
        self._jobs = jobs
        self._store = store
        self._config = config
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="unlearner-job")
        self._stopping = threading.Event()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work_loop(), name=f"unlearner-worker-{i}")
                         for i in range(self._config.workers)]

    def wake(self) -> None:
        """A job was queued: idle workers look now rather than at their next poll."""
        self._wake.set()

    async def stop(self, timeout: float) -> None:
        """Stop claiming; running jobs stop at their next progress report and are queued again.
        Waits up to `timeout` seconds for them."""
        self._stopping.set()
        self._wake.set()
        pending: set[asyncio.Task[None]] = set()
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=timeout)
        for task in pending:
            log.warning("a job did not stop within %.0f s; its lease will expire and another "
                        "runner resumes it", timeout)
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _work_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = await self._claim_and_run()
            except Exception as exc:  # noqa: BLE001 - a worker outlives any one failure
                log.warning("job worker pass failed: %s", exc, exc_info=exc)
                ran = False
            if not ran:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_seconds)

    async def _claim_and_run(self) -> bool:
        config = self._config
        claim = await asyncio.to_thread(self._jobs.claim, self._owner, config.lease_seconds,
                                        config.max_attempts)
        for job in claim.given_up:
            metrics.JOBS.labels(job.kind.value, "failed").inc()
            log.warning("job %s (%s of %s) failed: %s", job.job_id, job.kind.value, job.model, job.error)
        if claim.job is None:
            metrics.JOBS_QUEUED.set(await asyncio.to_thread(self._jobs.count, JobState.QUEUED))
            return False
        if claim.resumed:
            metrics.JOBS_RESUMED.labels(claim.job.kind.value).inc()
            log.warning("job %s: its runner stopped; resuming it (attempt %d of %d)", claim.job.job_id,
                        claim.job.attempts, config.max_attempts)
        await self._run(claim.job)
        return True

    async def _run(self, job: JobRecord) -> None:
        kind = job.kind.value
        log.info("job %s: %s of %s, attempt %d", job.job_id, kind, job.model, job.attempts)
        monitor = Monitor(self._stopping, self._config.job_time_limit_seconds)
        heartbeat = asyncio.create_task(self._heartbeat(job, monitor))
        metrics.JOBS_RUNNING.labels(kind).inc()
        started = time.monotonic()
        try:
            outcome = await self._attempt(job, monitor)
        finally:
            heartbeat.cancel()
            metrics.JOBS_RUNNING.labels(kind).dec()
        seconds = time.monotonic() - started
        if outcome.interrupted:
            if not monitor.lost.is_set():
                await self._settle(self._jobs.release, job, delay_seconds=0.0, error=None,
                                   consume_attempt=False)
                log.info("job %s queued again: the unlearner is shutting down", job.job_id)
            return
        if outcome.retry:
            metrics.JOBS_RETRIED.labels(kind).inc()
            await self._settle(self._jobs.release, job, delay_seconds=self._config.retry_seconds,
                               error=outcome.error, consume_attempt=True)
            log.warning("job %s queued again after %.0f s: %s", job.job_id, self._config.retry_seconds,
                        outcome.error)
            return
        if outcome.version is not None:
            ended = await self._settle(self._jobs.succeed, job, outcome.version)
        else:
            ended = await self._settle(self._jobs.fail, job, outcome.error)
        if ended is None:
            log.warning("job %s: its lease was lost before the end was recorded", job.job_id)
            return
        metrics.JOBS.labels(kind, ended.state.value).inc()
        metrics.JOB_SECONDS.labels(kind).observe(seconds)
        if ended.error:
            log.warning("job %s failed after %.1f s: %s", job.job_id, seconds, ended.error)
        else:
            log.info("job %s wrote %s %s in %.1f s", job.job_id, job.model, ended.result_version, seconds)

    async def _attempt(self, job: JobRecord, monitor: Monitor) -> _Outcome:
        loop = asyncio.get_running_loop()
        try:
            version = await loop.run_in_executor(self._executor, execute, self._store, self._jobs,
                                                 job, monitor, self._config.verification)
        except JobInterrupted:
            return _Outcome(interrupted=True)
        except Unavailable as exc:
            error = f"Unavailable: {exc}"
            if job.attempts < self._config.max_attempts:
                return _Outcome(error=error, retry=True)
            return _Outcome(error=f"{error} (after {job.attempts} attempts)")
        except VeilError as exc:
            return _Outcome(error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug fails its job, not the worker
            log.exception("job %s: unexpected error", job.job_id)
            return _Outcome(error=f"internal error: {type(exc).__name__}: {exc}")
        return _Outcome(version=version)

    async def _heartbeat(self, job: JobRecord, monitor: Monitor) -> None:
        config = self._config
        while True:
            await asyncio.sleep(config.heartbeat_seconds)
            try:
                held = await asyncio.to_thread(self._jobs.heartbeat, job, monitor.progress,
                                               config.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down: try again
                log.warning("job %s: heartbeat failed (the lease runs on): %s", job.job_id, exc)
                continue
            if not held:
                log.warning("job %s: lease lost to another runner (or the job was cancelled); stopping "
                            "its work", job.job_id)
                monitor.lost.set()
                return

    @staticmethod
    async def _settle(change: Callable, *args: object, **kwargs: object):
        """Record an attempt's end, retrying while the database is unavailable; if it stays so,
        the lease expires and the job is resumed (and finds a version it wrote)."""
        pause = SETTLE_BACKOFF_SECONDS
        for _ in range(SETTLE_TRIES - 1):
            try:
                return await asyncio.to_thread(change, *args, **kwargs)
            except (Unavailable, Aborted) as exc:
                log.warning("recording a job's end failed, retrying in %.1f s: %s", pause, exc)
                await asyncio.sleep(pause)
                pause *= 2
        return await asyncio.to_thread(change, *args, **kwargs)
