"""The unlearning dispatcher and the retention of originals: a background task of every replica.

Each pass (every VEIL_UNLEARNING_POLL_SECONDS):

1. batches claimed but not yet submitted (BATCHED: this or a dead replica was interrupted) are
   submitted; the batch id is the Unlearn request id, so a resubmission is the same job;
2. submitted batches are checked (GetJob): SUCCEEDED -> DONE; FAILED -> back to the queue while
   the requests have attempts left (VEIL_UNLEARNING_MAX_ATTEMPTS), else FAILED for an operator;
3. every (tenant, model) with published releases waiting is claimed in batches of at most
   VEIL_UNLEARNING_BATCH_SIZE pairs and submitted, all pairs of a batch in one Unlearn request;
4. retention: originals whose sessions' dependent models are all updated (or whose sessions were
   closed without a release) are deleted from the store and marked deleted (policy
   VEIL_RETENTION_POLICY; `keep` deletes nothing).

Replicas claim disjoint batches (SKIP LOCKED); steps 1 and 2 may see the same batch on two
replicas, and the state transitions that lose such a race are ignored. Without an unlearner
(VEIL_UNLEARNER_TARGET unset) no request is ever queued, and only retention runs.
"""

from __future__ import annotations

import asyncio
import logging

from services.gateway.downstream import retryable
from services.gateway.metrics import ORIGINALS_DELETED, UNLEARNING_JOB_SECONDS, UNLEARNING_JOBS
from services.gateway.unlearner import UnlearnerClient
from veil.errors import FailedPrecondition, NotFound, VeilError
from services.gateway.state import GatewayState, UnlearningBatch, UnlearningStatus
from services.gateway.state.unlearning import DueOriginal
from veil.store import ObjectStore
from veil.v1 import unlearner_pb2

log = logging.getLogger(__name__)

ACTOR = "gateway-retention"


class UnlearningDispatcher:
    def __init__(self, state: GatewayState, unlearner: UnlearnerClient | None, store: ObjectStore,
                 *, batch_size: int, max_attempts: int) -> None:
        self._state = state
        self._unlearner = unlearner
        self._store = store
        self._batch_size = batch_size
        self._max_attempts = max_attempts

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # a pass that failed is retried on the next one
                log.warning("unlearning dispatch pass failed: %s", exc, exc_info=exc)
            await asyncio.sleep(interval)

    async def run_once(self) -> None:
        queue = self._state.unlearning
        if self._unlearner is not None:
            for batch in await asyncio.to_thread(queue.batches, UnlearningStatus.BATCHED):
                await self._submit(batch)
            for batch in await asyncio.to_thread(queue.batches, UnlearningStatus.SUBMITTED):
                await self._check(batch)
            for tenant, model in await asyncio.to_thread(queue.models_waiting):
                while batch := await asyncio.to_thread(queue.claim_batch, tenant, model,
                                                       self._batch_size):
                    await self._submit(batch)
        await self.apply_retention()

    async def _submit(self, batch: UnlearningBatch) -> None:
        try:
            job = await self._unlearner.submit(batch)
        except VeilError as exc:
            if retryable(exc):
                log.warning("unlearning batch %s stays queued: %s", batch.batch_id, exc)
                return
            # The unlearner refuses these pairs for good (a model or object it does not have).
            UNLEARNING_JOBS.labels("failed").inc()
            await self._transition(self._state.unlearning.mark_failed, batch.batch_id,
                                   f"unlearner refused the batch: {exc}", retry=False)
            return
        await self._transition(self._state.unlearning.mark_submitted, batch.batch_id, job.job_id)
        log.info("unlearning batch %s of %d pair(s) is job %s of model %s", batch.batch_id,
                 len(batch.requests), job.job_id, batch.model)

    async def _check(self, batch: UnlearningBatch) -> None:
        try:
            job = await self._unlearner.job(batch.tenant, batch.job_id)
        except NotFound:
            await self._finish_failed(batch, f"job {batch.job_id} is unknown to the unlearner")
            return
        except VeilError as exc:
            log.warning("unlearning job %s not checked: %s", batch.job_id, exc)
            return
        if job.state == unlearner_pb2.JOB_STATE_SUCCEEDED:
            if await self._transition(self._state.unlearning.mark_done, batch.batch_id):
                UNLEARNING_JOBS.labels("succeeded").inc()
                UNLEARNING_JOB_SECONDS.observe(max(0.0, (job.updated_at.ToDatetime()
                                                         - job.created_at.ToDatetime()).total_seconds()))
                log.info("unlearning job %s wrote %s %s", job.job_id, job.model, job.result_version)
        elif job.state in (unlearner_pb2.JOB_STATE_FAILED, unlearner_pb2.JOB_STATE_CANCELLED):
            # A cancelled job (an operator's CancelJob) wrote nothing: it counts as a failed one.
            await self._finish_failed(batch, job.error or "failed")

    async def _finish_failed(self, batch: UnlearningBatch, error: str) -> None:
        retry = max(r.attempts for r in batch.requests) < self._max_attempts
        if await self._transition(self._state.unlearning.mark_failed, batch.batch_id, error,
                                  retry=retry):
            UNLEARNING_JOBS.labels("retried" if retry else "failed").inc()
            log.warning("unlearning batch %s failed (%s): %s", batch.batch_id,
                        "requeued" if retry else "left for an operator", error)

    @staticmethod
    async def _transition(change, *args, **kwargs) -> bool:
        """Apply a batch transition; False when another replica already moved the batch on."""
        try:
            await asyncio.to_thread(change, *args, **kwargs)
        except FailedPrecondition as exc:
            log.info("unlearning batch already moved on by another replica: %s", exc)
            return False
        return True

    async def apply_retention(self) -> int:
        """Delete every original that is due; returns how many were deleted."""
        deleted = 0
        for due in await asyncio.to_thread(self._state.retention.originals_due):
            if await asyncio.to_thread(self._delete_unless_uploaded_again, due):
                ORIGINALS_DELETED.inc()
                deleted += 1
            await asyncio.to_thread(self._state.retention.mark_original_deleted, due.tenant,
                                    due.original.key, due.finished_at, actor=ACTOR)
        return deleted

    def _delete_unless_uploaded_again(self, due: DueOriginal) -> bool:
        """Delete the original unless it was written after its sessions finished: the same bytes
        uploaded again are the owner's new upload (see Retention.originals_due, which leaves out
        the uploads the gateway recorded; this also covers a write the audit log has not seen
        yet, to the store's one-second resolution). Returns whether the object was deleted."""
        store = self._store.for_tenant(due.tenant)
        try:
            written = store.stat(due.original.key).last_modified
        except NotFound:
            return False
        # The list of due originals may be stale by now: an upload audited since it was read
        # is kept too (the store's timestamp alone cannot tell a write in the same second).
        if (written is not None and written > due.finished_at) or self._state.retention.uploaded_since(
                due.tenant, due.original.key, due.finished_at):
            log.info("retention keeps %s: uploaded again after its sessions finished", due.original.key)
            return False
        store.delete(due.original.key)
        return True
