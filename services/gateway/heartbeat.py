"""Renewing a lease while the work it guards runs: the request-id claims and the round leases
of the gateway expire within seconds of their replica's death because only a live replica
renews them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def heartbeat(renew: Callable[[], object], period: float, what: str) -> AsyncIterator[None]:
    """Call `renew` (blocking: it runs in a thread) every `period` seconds while the block runs.
    A failed renewal is logged and retried on the next beat: the lease is only lost when the
    beats stop for longer than it lasts."""
    async def beat() -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(renew)
            except Exception as exc:
                log.warning("could not renew %s: %s", what, exc)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
