"""Group commit: the deliveries that arrive while one Redis round trip is in flight share the next.

The edge serves many requests at once on one event loop. Each round trip to Redis costs the
process and redis-server system calls and a wake-up, which on a small machine cost more than
the script itself. So a delivery that finds no round trip in flight is sent at once (no added
latency when idle); deliveries that arrive meanwhile wait, and when the round trip ends they
all go in the next one (``Enqueuer.pack``). Every request still gets its own answer only after
its delivery is stored, and an error reaches every request of the batch, so a Redis outage is a
503 for each of them and a 2xx is never given for work that was not stored. The idea is the
write-ahead log's group commit, as in PostgreSQL or InnoDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_BATCH = 64  # bounds one script's run time: Redis serves nobody else meanwhile


class GroupCommit(Generic[Item, Result]):
    """Runs ``flush(items) -> results`` for batches of the items that coroutines :meth:`submit`.

    One flush at a time, on the loop that calls :meth:`submit`: while one is in flight, new items
    queue; when it ends, the next takes up to ``max_batch`` of them, oldest first.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[Sequence[Result]]], max_batch: int = MAX_BATCH):
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None  # runs while items are pending
        self.batches = 0  # flushes made, and items they carried: what /metrics and the bench report
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """Store ``item`` with whatever else is waiting; returns its result or raises the batch's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            # A task of its own, not the first request's coroutine: a request that goes away (its
            # client is gone, its task cancelled) must not strand the items queued behind it.
            self._flusher = loop.create_task(self._flush_pending())
        return await future

    async def _flush_pending(self) -> None:
        """Flush batches, oldest first, until nothing waits."""
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self.batches += 1
                self.items += len(batch)
                try:
                    results = await self._flush([item for item, _ in batch])
                    for (_, future), result in zip(batch, results, strict=True):  # a short answer raises
                        if not future.done():
                            future.set_result(result)
                except Exception as exc:  # every request of the batch must hear of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            self._flusher = None
