"""In-process notifications for StreamRounds: a round's progress and "the session changed".

Only the replica generating a round sees its progress; StreamRounds on any replica also polls the
database (VEIL_STREAM_POLL_SECONDS), so it sees rounds and state changes from every replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from veil.v1 import common_pb2

CHANGED = "changed"
QUEUE_SIZE = 256

Event = common_pb2.Progress | str


class SessionEvents:
    """Subscribers per session id; publishing never blocks (a slow subscriber loses progress
    events, never a "changed" one: it re-reads the session from the database anyway)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}

    @contextmanager
    def subscribe(self, session_id: str) -> Iterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(session_id, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers.get(session_id, set())
            queues.discard(queue)
            if not queues:
                self._subscribers.pop(session_id, None)

    def publish(self, session_id: str, event: Event) -> None:
        for queue in self._subscribers.get(session_id, ()):
            if queue.full():
                if event != CHANGED:
                    continue
                queue.get_nowait()
            queue.put_nowait(event)
