"""Group commit: the deliveries that arrive while one Redis round trip is in flight share the next.

A web process serves many requests at once on its threads. Each round trip to Redis costs the
process and redis-server two system calls and a wake-up, which on a small machine costs more
than the script itself. So a thread that finds no round trip in flight sends its delivery at
once (no added latency when idle); threads that arrive meanwhile queue up, and when the round
trip ends the first of them sends all of them in one call (``Enqueuer.commit``). Every request
still gets its own answer only after its delivery is stored, and an error reaches every request
of the batch, so a Redis outage is a 503 for each of them and a 2xx is never given for work that
was not stored. The idea is the write-ahead log's group commit, as in PostgreSQL or InnoDB.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_BATCH = 64  # bounds one script's run time: Redis serves nobody else meanwhile


class _Slot(Generic[Item, Result]):
    """One request's place in the queue: its item, then its result or error, or the turn to lead.

    ``ready`` is a plain lock held from the start and released once to wake the waiting thread:
    the cheapest wake-up Python has (an Event's set() takes a Condition and its own lock first).
    """

    __slots__ = ("error", "item", "lead", "ready", "result")

    def __init__(self, item: Item):
        self.item = item
        self.ready = threading.Lock()
        self.ready.acquire()
        self.lead = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Runs ``flush(items) -> results`` for batches of the items that threads :meth:`submit`."""

    def __init__(self, flush: Callable[[list[Item]], Sequence[Result]], max_batch: int = MAX_BATCH):
        self._flush = flush
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot[Item, Result]] = []
        self._flushing = False  # invariant: pending items exist only while a flush is in flight

    def submit(self, item: Item) -> Result:
        """Store ``item`` with whatever else is waiting; returns its result or raises the batch's error."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._pending.append(slot)
            leads = not self._flushing
            self._flushing = True
        if not leads:
            slot.ready.acquire()
            if not slot.lead:  # another thread's flush carried it
                return self._outcome(slot)
        self._lead()
        return self._outcome(slot)

    def _lead(self) -> None:
        """Flush the oldest pending items (this thread's first), then pass the lead to the next waiter."""
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        try:
            results = self._flush([slot.item for slot in batch])
            for slot, result in zip(batch, results, strict=True):  # a short answer raises here
                slot.result = result
        except BaseException as exc:  # every request of the batch must hear of it
            for slot in batch:
                slot.error = exc
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.ready.release()
            else:
                self._flushing = False
        for slot in batch[1:]:  # the first is this thread's own
            slot.ready.release()

    @staticmethod
    def _outcome(slot: _Slot[Item, Result]) -> Result:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]
