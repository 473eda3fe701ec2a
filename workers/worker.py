"""``syncbridge worker``: RQ workers with their scheduler, tuned so follow-ups are not late.

RQ's defaults suit long jobs; ours are short and rescheduled, so the worker TTL and maintenance
interval are lowered: an abandoned job (a killed worker) is found about 60 s after its
execution limit (request_timeout + 10 s), and the scheduler resumes promptly after Redis returns.

Jobs run in-process (``SimpleWorker``): no fork per execution, HTTP sessions and token caches
live as long as the worker. Several processes (RQ's ``WorkerPool``) keep one slow provider from
holding up the others: each execution is one HTTP call bounded by the target's
``request_timeout``, so a slow provider occupies at most one process at a time per call.

RQ's statistics are kept true where RQ lets us (docs/RELIABILITY.md, "What RQ's own tools show"):
a job that returns ``rq.Retry`` to poll again has neither failed nor finished, so it is not counted
as a failure; a sync that fails raises ``SyncFailed`` and is logged by us in one line, not by RQ
with a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Queue, SimpleWorker
from rq.job import Job, Retry
from rq.job_lifecycle import call_exception_handlers
from rq.registry import StartedJobRegistry
from rq.worker_pool import WorkerPool

from bridge import redact
from bridge.connection import connect
from bridge.queueing import NOTIFY_QUEUE_NAME, QUEUE_NAME
from workers.context import context
from workers.jobs import SyncFailed
from workers.periodic import ensure_tick

WORKER_TTL = 30  # an idle worker blocks on the queue for TTL - 15 s, and runs maintenance between waits
MAINTENANCE_INTERVAL = 15
JOB_MONITORING_INTERVAL = 10
QUEUES = (QUEUE_NAME, NOTIFY_QUEUE_NAME)  # syncs first


class SyncWorker(SimpleWorker):
    """RQ's in-process worker with syncbridge's timings (WorkerPool builds workers by class)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL)
        super().__init__(*args, **kwargs)
        self._rescheduling = False

    def handle_job_retry(self, job: Job, queue: Queue, retry: Retry, started_job_registry: StartedJobRegistry,
                         execution: Any) -> None:
        """RQ counts every returned Retry as a failed job; a poll rescheduled is neither failed nor done.

        RQ fails the job itself once ``retry.max`` runs out (never, for ours): that still counts.
        """
        self._rescheduling = not (job.number_of_retries and job.number_of_retries >= retry.max)
        try:
            super().handle_job_retry(job, queue, retry, started_job_registry, execution)
        finally:
            self._rescheduling = False

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        if not self._rescheduling:
            super().increment_failed_job_count(pipeline)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """A failed sync was already logged with its reason; RQ would add the traceback of the raise."""
        if isinstance(exc_info[1], SyncFailed):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "",
                           execution: Any = None) -> None:
        """RQ keeps a failed execution's traceback in Redis: scrubbed first, like all we store."""
        super().handle_job_failure(job, queue, started_job_registry, redact.scrub(exc_string), execution)


def run(burst: bool = False, processes: int = 1, redis_url: str | None = None) -> None:
    """Work the queues until stopped (or, with ``burst``, until they are empty)."""
    context()  # fail fast on a bad config, before taking any job

    redis = connect(redis_url, blocking=True)
    # RQ lists a queue (``rq info``, rq-dashboard) once something was enqueued on it; the notify
    # queue may stay empty for days, and both belong in the list from the start.
    redis.sadd(Queue.redis_queues_keys, *(Queue(name, connection=redis).key for name in QUEUES))
    ensure_tick(redis)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    if processes <= 1:
        worker = SyncWorker([Queue(name, connection=redis) for name in QUEUES], connection=redis)
        worker.work(burst=burst, with_scheduler=True, logging_level=level)
    else:
        WorkerPool(list(QUEUES), connection=redis, num_workers=processes, worker_class=SyncWorker).start(
            burst=burst, logging_level=level)
