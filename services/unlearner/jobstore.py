"""Train and unlearn jobs in SQL: creation (idempotent by request id), claiming with a lease,
heartbeats, and the end states.

    QUEUED --claim--> RUNNING --succeed--> SUCCEEDED
                        |  \\--fail-----> FAILED
                        |--release----> QUEUED      (an unavailable dependency, or a shutdown)
                        \\--lease expires, claimed again--> RUNNING (attempts + 1), or FAILED
                                                            once attempts reach the maximum

Every change of a running job names the claim's lease owner (unique per claim): a runner that
lost its lease (it was too slow to renew, and another runner took the job over) changes nothing.

Claims are serialised (a transaction-scoped advisory lock on PostgreSQL, the write lock on
SQLite) and skip a job while another job of the same tenant's model is running: updates of one
model run one after another, each from the version the previous one wrote. Rows are picked with
SELECT ... FOR UPDATE SKIP LOCKED, so a claim never waits on a row another transaction holds.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from services.unlearner.tables import jobs as _jobs
from veil.db import Database, insert_ignore
from veil.db.clock import Clock, as_utc, utcnow
from veil.errors import DataLoss, InvalidArgument, NotFound, quoted

# Serialises claims on PostgreSQL (pg_advisory_xact_lock).
_CLAIM_LOCK = int.from_bytes(hashlib.sha256(b"veil-unlearner:claim").digest()[:8], "big", signed=True)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(str, enum.Enum):
    TRAIN = "train"
    UNLEARN = "unlearn"


@dataclasses.dataclass(frozen=True)
class Progress:
    stage: str
    step: int = 0
    total_steps: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Progress:
        return cls(str(data["stage"]), int(data["step"]), int(data["total_steps"]))


QUEUED_PROGRESS = Progress("queued")


@dataclasses.dataclass(frozen=True)
class JobRecord:
    job_id: str
    tenant: str
    request_id: str
    kind: JobKind
    state: JobState
    model: str
    requested_version: str | None
    base_version: str | None
    result_version: str | None
    method: str | None
    spec: dict
    session_ids: tuple[str, ...]
    progress: Progress
    error: str | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclasses.dataclass(frozen=True)
class NewJob:
    """What a Train or Unlearn request asks for (validated by the servicer)."""

    kind: JobKind
    model: str
    spec: dict
    requested_version: str | None = None
    method: str | None = None
    session_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Claim:
    """The job a runner now holds (as RUNNING; `resumed` when its previous runner died), and the
    abandoned jobs the claim gave up on (FAILED: their attempts were used up)."""

    job: JobRecord | None
    resumed: bool = False
    given_up: tuple[JobRecord, ...] = ()


def _record(row: Row) -> JobRecord:
    try:
        return JobRecord(
            job_id=row.job_id, tenant=row.tenant, request_id=row.request_id, kind=JobKind(row.kind),
            state=JobState(row.state), model=row.model, requested_version=row.requested_version,
            base_version=row.base_version, result_version=row.result_version, method=row.method,
            spec=dict(row.spec), session_ids=tuple(row.session_ids),
            progress=Progress.from_json(row.progress), error=row.error, attempts=row.attempts,
            lease_owner=row.lease_owner, lease_expires_at=as_utc(row.lease_expires_at),
            created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
            started_at=as_utc(row.started_at), finished_at=as_utc(row.finished_at))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataLoss(f"stored job {row.job_id} is unreadable: {exc}") from exc


def _of_kind(record: JobRecord, kind: JobKind) -> JobRecord:
    if record.kind is not kind:
        raise InvalidArgument(f"request id {quoted(record.request_id)} already names "
                              f"{record.kind.value} job {record.job_id}")
    return record


class JobStore:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    # -- creating and reading -------------------------------------------------------------------

    def create(self, tenant: str, request_id: str, job: NewJob) -> tuple[JobRecord, bool]:
        """The tenant's job of `request_id`: a new QUEUED one (True), or the one that request id
        already made (False). A request id already used for a job of another kind is
        InvalidArgument."""
        now, job_id = self._clock(), str(uuid.uuid4())
        with self._db.write() as conn:
            insert_ignore(conn, _jobs, dict(
                job_id=job_id, tenant=tenant, request_id=request_id, kind=job.kind.value,
                state=JobState.QUEUED.value, model=job.model, requested_version=job.requested_version,
                method=job.method, spec=job.spec, session_ids=list(job.session_ids),
                progress=QUEUED_PROGRESS.to_json(), attempts=0, run_after=now, created_at=now,
                updated_at=now), ["tenant", "request_id"])
            record = _record(conn.execute(sa.select(_jobs).where(
                _jobs.c.tenant == tenant, _jobs.c.request_id == request_id)).one())
        return _of_kind(record, job.kind), record.job_id == job_id

    def by_request(self, tenant: str, request_id: str, kind: JobKind) -> JobRecord | None:
        """The tenant's job that `request_id` made, if any (InvalidArgument if of another kind)."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.tenant == tenant,
                                                      _jobs.c.request_id == request_id)).first()
        return None if row is None else _of_kind(_record(row), kind)

    def get(self, tenant: str, job_id: str) -> JobRecord:
        """The tenant's job; another tenant's job is NotFound like a missing one."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id,
                                                      _jobs.c.tenant == tenant)).first()
        if row is None:
            raise NotFound(f"job {quoted(job_id)} not found")
        return _record(row)

    def count(self, state: JobState) -> int:
        with self._db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(_jobs)
                                .where(_jobs.c.state == state.value)).scalar_one()

    def cancel(self, tenant: str, job_id: str) -> JobRecord:
        """End the tenant's job CANCELLED unless it has ended already (returned unchanged). A
        running job's runner finds its lease gone at its next heartbeat and stops its work; if it
        was already recording its end, the lease check there makes the cancellation win."""
        with self._db.write() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id, _jobs.c.tenant == tenant)
                               .with_for_update()).first()
            if row is None:
                raise NotFound(f"job {quoted(job_id)} not found")
            if JobState(row.state).terminal:
                return _record(row)
            return self._end(conn, job_id, JobState.CANCELLED, error="cancelled by the caller (CancelJob)")

    # -- claiming -------------------------------------------------------------------------------

    def claim(self, owner_prefix: str, lease_seconds: float, max_attempts: int) -> Claim:
        """Take the oldest runnable job: QUEUED and due, or RUNNING with an expired lease (its
        runner died), unless a job of the same tenant's model is running. An abandoned job that
        used up its attempts is FAILED instead and the search goes on."""
        now = self._clock()
        alive = _jobs.alias("alive")
        model_busy = sa.exists().where(
            alive.c.tenant == _jobs.c.tenant, alive.c.model == _jobs.c.model,
            alive.c.job_id != _jobs.c.job_id, alive.c.state == JobState.RUNNING.value,
            alive.c.lease_expires_at >= now)
        runnable = sa.or_(
            sa.and_(_jobs.c.state == JobState.QUEUED.value, _jobs.c.run_after <= now),
            sa.and_(_jobs.c.state == JobState.RUNNING.value, _jobs.c.lease_expires_at < now))
        given_up: list[JobRecord] = []
        with self._db.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK})
            while True:
                row = conn.execute(
                    sa.select(_jobs).where(runnable, sa.not_(model_busy))
                    .order_by(_jobs.c.created_at, _jobs.c.job_id).limit(1)
                    .with_for_update(skip_locked=True, of=_jobs)).first()
                if row is None:
                    return Claim(None, given_up=tuple(given_up))
                if row.state == JobState.RUNNING.value and row.attempts >= max_attempts:
                    error = (f"the job was interrupted {row.attempts} time(s) (its runner stopped: "
                             f"a crash or restart) and used up its {max_attempts} attempt(s); "
                             f"last progress: {Progress.from_json(row.progress).stage}")
                    given_up.append(self._end(conn, row.job_id, JobState.FAILED, error=error))
                    continue
                owner = f"{owner_prefix}/{uuid.uuid4().hex[:12]}"
                conn.execute(sa.update(_jobs).where(_jobs.c.job_id == row.job_id).values(
                    state=JobState.RUNNING.value, attempts=_jobs.c.attempts + 1, lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    progress=Progress("starting").to_json(), started_at=now, updated_at=now))
                return Claim(self._load(conn, row.job_id), resumed=row.state == JobState.RUNNING.value,
                             given_up=tuple(given_up))

    # -- changes by the runner holding the lease --------------------------------------------------

    def heartbeat(self, job: JobRecord, progress: Progress, lease_seconds: float) -> bool:
        """Renew the lease and record progress; False when the lease is no longer this runner's."""
        now = self._clock()
        return self._update_held(job, progress=progress.to_json(), updated_at=now,
                                 lease_expires_at=now + timedelta(seconds=lease_seconds))

    def record_base(self, job: JobRecord, base_version: str) -> bool:
        return self._update_held(job, base_version=base_version, updated_at=self._clock())

    def succeed(self, job: JobRecord, result_version: str) -> JobRecord | None:
        return self._finish(job, JobState.SUCCEEDED, result_version=result_version)

    def fail(self, job: JobRecord, error: str) -> JobRecord | None:
        return self._finish(job, JobState.FAILED, error=error)

    def release(self, job: JobRecord, *, delay_seconds: float, error: str | None,
                consume_attempt: bool) -> bool:
        """Back to QUEUED, runnable after `delay_seconds`; a shutdown gives its attempt back."""
        now = self._clock()
        return self._update_held(
            job, state=JobState.QUEUED.value, lease_owner=None, lease_expires_at=None,
            run_after=now + timedelta(seconds=delay_seconds), error=error,
            attempts=_jobs.c.attempts - (0 if consume_attempt else 1),
            progress=QUEUED_PROGRESS.to_json(), updated_at=now)

    def _update_held(self, job: JobRecord, **values: object) -> bool:
        with self._db.write() as conn:
            result = conn.execute(sa.update(_jobs).where(
                _jobs.c.job_id == job.job_id, _jobs.c.state == JobState.RUNNING.value,
                _jobs.c.lease_owner == job.lease_owner).values(**values))
        return result.rowcount == 1

    def _finish(self, job: JobRecord, state: JobState, **values: object) -> JobRecord | None:
        """The job in its end state, or None when the lease is no longer this runner's."""
        with self._db.write() as conn:
            held = conn.execute(sa.select(_jobs.c.job_id).where(
                _jobs.c.job_id == job.job_id, _jobs.c.state == JobState.RUNNING.value,
                _jobs.c.lease_owner == job.lease_owner).with_for_update()).first()
            if held is None:
                return None
            return self._end(conn, job.job_id, state, **values)

    def _end(self, conn: Connection, job_id: str, state: JobState, **values: object) -> JobRecord:
        now = self._clock()
        conn.execute(sa.update(_jobs).where(_jobs.c.job_id == job_id).values(
            state=state.value, lease_owner=None, lease_expires_at=None, finished_at=now,
            updated_at=now, progress=Progress(state.value).to_json(), **values))
        return self._load(conn, job_id)

    @staticmethod
    def _load(conn: Connection, job_id: str) -> JobRecord:
        return _record(conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id)).one())
