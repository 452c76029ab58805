"""Micro-batching of anonymisation requests across callers.

Requests (`Work`) wait in a bounded queue; submitting to a full queue raises ResourceExhausted.
One worker task forms a batch: it takes the oldest request, then more until the batch holds
`max_rows` rows (images x candidates) or `max_wait` seconds have passed since it took the first
(a request that would overflow the batch waits for the next one; a request larger than
`max_rows` runs alone). The batch runs in a dedicated thread, so torch never blocks the event
loop: all images are encoded and inverted together (`Anonymizer.prepare`), each request gets its
own release plan (its privacy settings, candidates and seed), and all plans are decoded together;
with verified edits each plan's candidates are then read and the disagreeing ones decoded again
(`Anonymizer.offers`). Progress and results are routed back to each request's event stream.

Cancellation and deadlines (a request is *gone* once `cancel()` was called or its deadline passed):
- gone while queued: dropped when the worker reaches it, before any work;
- gone while its batch runs: the batch checks at every diffusion step; when EVERY request of the
  batch is gone it stops there (BatchAborted). Otherwise it continues: a request gone before
  planning is left out of the decode, one gone later has its results discarded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from services.anonymizer import metrics
from veil.diffusion.anonymize import Anonymizer, ReleasePlan
from veil.diffusion.verify import VerifiedCandidate
from veil.errors import Aborted, ResourceExhausted
from veil.privacy import PrivacySettings

log = logging.getLogger(__name__)

Results = list[list[VerifiedCandidate]]  # [image][candidate]; with verified edits, some refused


@dataclass(frozen=True)
class BatchProgress:
    """One progress event of a request: "queued", "started", or a diffusion step of its batch
    ("invert", "decode"; `step` of `total` counted over the whole batch; "verify": a step of a
    decode again, `total` 0 since how many there will be is not known ahead)."""

    stage: str
    step: int = 0
    total: int = 0
    batch_id: str = ""
    message: str = ""


class BatchAborted(Aborted):
    """Every request of a running batch is gone; its work stopped."""


class Work:
    """One request in the batcher: its images and privacy settings, and the stream of its events."""

    def __init__(self, images: Sequence[np.ndarray], settings: PrivacySettings, candidates: int, seed: int | None,
                 timeout: float | None = None) -> None:
        self.images = list(images)
        self.settings = settings
        self.candidates = candidates
        self.seed = seed
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.enqueued_at = 0.0
        self._cancelled = False
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[BatchProgress | Results | BaseException] = asyncio.Queue()

    @property
    def rows(self) -> int:
        return len(self.images) * self.candidates

    @property
    def gone(self) -> bool:
        """Cancelled or past its deadline (read from the batch thread too)."""
        return self._cancelled or (self.deadline is not None and time.monotonic() >= self.deadline)

    def cancel(self) -> None:
        self._cancelled = True

    def emit(self, item: BatchProgress | Results | BaseException) -> None:
        """Queue an event for the caller; safe from any thread."""
        self._loop.call_soon_threadsafe(self._events.put_nowait, item)

    async def events(self) -> AsyncIterator[BatchProgress | Results]:
        """Progress events, then the results (the last item); raises what failed the work."""
        while True:
            item = await self._events.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if not isinstance(item, BatchProgress):
                return


class _StepReporter:
    """The batch's progress callback: aborts when every request is gone, times each step, and
    sends batch-wide step counts to the requests still there."""

    def __init__(self, batch: list[Work], batch_id: str, chunk: int, is_stopping: Callable[[], bool]) -> None:
        self.batch = batch
        self.batch_id = batch_id
        self.chunk = chunk
        self.is_stopping = is_stopping
        self.rows = {"invert": sum(len(w.images) for w in batch), "decode": 0}
        self.count = dict.fromkeys(self.rows, 0)
        self.last = time.perf_counter()

    def restart_clock(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, stage: str, step: int, total: int) -> None:
        if self.is_stopping() or all(w.gone for w in self.batch):
            raise BatchAborted(f"batch {self.batch_id}: every request is gone")
        now = time.perf_counter()
        metrics.DIFFUSION_STEP_SECONDS.labels(stage).observe(now - self.last)
        self.last = now
        self.count[stage] = self.count.get(stage, 0) + 1
        steps = total * math.ceil(self.rows[stage] / self.chunk) if stage in self.rows else 0
        event = BatchProgress(stage, self.count[stage], steps, self.batch_id)
        for work in self.batch:
            if not work.gone:
                work.emit(event)


def _count(offers: Results) -> None:
    for row in offers:
        for candidate in row:
            metrics.FACE_CANDIDATES.labels("offered" if candidate.offered else "refused").inc()
            metrics.DECODE_TRIES.observe(candidate.tries)


def _drop(work: Work) -> None:
    log.info("dropped a request that was cancelled or past its deadline before its work")
    work.emit(Aborted("the request was cancelled or passed its deadline before its work started"))


class Batcher:
    def __init__(self, anonymizer: Anonymizer, max_rows: int, max_wait: float, queue_max_size: int) -> None:
        self.anonymizer = anonymizer
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._queue: asyncio.Queue[Work] = asyncio.Queue(queue_max_size)
        self._held: Work | None = None  # taken from the queue, waits for the next batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anonymizer-batch")
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = itertools.count(1)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run_forever(), name="anonymizer-batcher")

    async def stop(self) -> None:
        """Stop the worker; a running batch aborts at its next step, queued requests fail."""
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        pending = [self._held] if self._held else []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for work in pending:
            metrics.QUEUE_DEPTH.dec()
            work.emit(Aborted("the anonymizer is shutting down"))
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def submit(self, work: Work) -> None:
        """Queue `work`; ResourceExhausted when the queue is full."""
        work.enqueued_at = time.monotonic()
        try:
            self._queue.put_nowait(work)
        except asyncio.QueueFull:
            raise ResourceExhausted(f"the anonymizer queue is full ({self._queue.maxsize} requests waiting); "
                                    "retry later") from None
        metrics.QUEUE_DEPTH.inc()
        work.emit(BatchProgress("queued", message=f"{self._queue.qsize()} request(s) waiting"))

    # -- the worker ------------------------------------------------------------------------------

    async def _run_forever(self) -> None:
        while True:
            try:
                batch = await self._collect()
                if batch:
                    await self._run(batch)
            except Exception:  # the worker must outlive any one batch, or every caller would hang
                log.exception("the batch worker failed; it goes on with the next batch")

    def _admit(self, work: Work) -> bool:
        """Count `work` out of the queue; False (and dropped) when it is gone."""
        metrics.QUEUE_DEPTH.dec()
        if work.gone:
            _drop(work)
            return False
        return True

    async def _next(self, timeout: float | None) -> Work | None:
        """The next queued request, or None after `timeout` seconds (an item is never lost)."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return None
        getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({getter}, timeout=timeout)
        if getter in done:
            return getter.result()
        getter.cancel()
        try:
            return await getter  # it may have taken an item just before the cancel
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return None

    async def _collect(self) -> list[Work]:
        first, self._held = self._held, None
        if first is not None and not self._admit(first):
            first = None
        while first is None:
            candidate = await self._next(None)
            if candidate is not None and self._admit(candidate):
                first = candidate
        batch, rows = [first], first.rows
        loop = asyncio.get_running_loop()
        closes = loop.time() + self.max_wait
        while rows < self.max_rows:
            work = await self._next(closes - loop.time())
            if work is None:
                break
            if rows + work.rows > self.max_rows:
                self._held = work  # still counted as waiting
                break
            if self._admit(work):
                batch.append(work)
                rows += work.rows
        live = []
        for work in batch:
            if work.gone:
                _drop(work)
            else:
                live.append(work)
        return live

    async def _run(self, batch: list[Work]) -> None:
        batch_id = uuid.uuid4().hex[:12]
        now = time.monotonic()
        rows = sum(w.rows for w in batch)
        metrics.BATCH_ROWS.observe(rows)
        for work in batch:
            metrics.QUEUE_WAIT_SECONDS.observe(now - work.enqueued_at)
            work.emit(BatchProgress("started", batch_id=batch_id,
                                    message=f"batch of {len(batch)} request(s), {rows} row(s)"))
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._execute, batch, batch_id)
        except BatchAborted:
            metrics.BATCHES.labels("aborted").inc()
            log.info("batch %s stopped: every request is gone", batch_id)
            self._fail(batch, Aborted(f"batch {batch_id} stopped"))
        except Exception as exc:
            metrics.BATCHES.labels("failed").inc()
            log.error("batch %s failed", batch_id, exc_info=exc)
            self._fail(batch, exc)
        else:
            metrics.BATCHES.labels("completed").inc()

    @staticmethod
    def _fail(batch: list[Work], exc: Exception) -> None:
        for work in batch:
            work.emit(exc)

    def _execute(self, batch: list[Work], batch_id: str) -> None:
        """The batch's torch work (in the batch thread); results go to each request's stream."""
        anonymizer = self.anonymizer
        report = _StepReporter(batch, batch_id, anonymizer.max_batch, lambda: self._stopping)
        prepared = anonymizer.prepare([img for w in batch for img in w.images], report)
        planned: list[tuple[Work, ReleasePlan]] = []
        start = 0
        for work in batch:
            share = prepared.select(start, start + len(work.images))
            start += len(work.images)
            if work.gone:
                _drop(work)
                continue
            try:
                planned.append((work, anonymizer.plan(share, work.settings, work.candidates, work.seed)))
            except Exception as exc:  # this request's budget only; the others go on
                work.emit(exc)
        if not planned:
            return
        report.rows["decode"] = sum(len(plan) for _, plan in planned)
        report.restart_clock()
        pixels = anonymizer.decode([plan for _, plan in planned], report)
        for (work, plan), images in zip(planned, pixels):
            if work.gone:  # its results would be discarded: spend no decode again on them
                work.emit(Aborted("the request was cancelled or passed its deadline"))
            else:
                offers = anonymizer.offers(plan, images, report)
                _count(offers)
                work.emit(offers)
