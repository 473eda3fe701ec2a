"""``syncbridge worker``: RQ workers with their scheduler, tuned so follow-ups are not late.

RQ's defaults suit long jobs; ours are short and rescheduled, so the worker TTL and maintenance
interval are lowered: an abandoned job (a killed worker) is found about 60 s after its
execution limit (request_timeout + 10 s), and the scheduler resumes promptly after Redis returns.

Jobs run in-process (``SimpleWorker``): no fork per execution, HTTP sessions and token caches
live as long as the worker. Several processes (RQ's ``WorkerPool``) keep one slow provider from
holding up the others: each execution is one HTTP call bounded by the target's
``request_timeout``, so a slow provider occupies at most one process at a time per call.

A Redis that does not answer when a worker starts is waited for (one log line naming it, then
retries with backoff), in the main process and in each pool process: otherwise every process
would die with a traceback and RQ's pool would respawn it at once, in a loop.

RQ's statistics are kept true where RQ lets us (docs/RELIABILITY.md, "What RQ's own tools show"):
a job that returns ``rq.Retry`` to poll again has neither failed nor finished, so it is not counted
as a failure; a sync that fails raises ``SyncFailed`` and is logged by us in one line, not by RQ
with a traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job, Retry
from rq.job_lifecycle import call_exception_handlers
from rq.registry import StartedJobRegistry
from rq.worker_pool import WorkerPool

from bridge import redact
from bridge.connection import address, connect, problem
from bridge.queueing import NOTIFY_QUEUE_NAME, QUEUE_NAME
from workers.context import context
from workers.jobs import SyncFailed
from workers.periodic import ensure_tick

WORKER_TTL = 30  # an idle worker blocks on the queue for TTL - 15 s, and runs maintenance between waits
MAINTENANCE_INTERVAL = 15
JOB_MONITORING_INTERVAL = 10
QUEUES = (QUEUE_NAME, NOTIFY_QUEUE_NAME)  # syncs first
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between attempts to reach Redis, doubling
ALIVE_WITHIN = 2 * WORKER_TTL  # a live worker heartbeats at least every WORKER_TTL - 15 s

log = logging.getLogger("syncbridge.worker")


class SyncWorker(SimpleWorker):
    """RQ's in-process worker with syncbridge's timings (WorkerPool builds workers by class)."""

    def __init__(self, *args: Any, **kwargs: Any):
        wait_for_redis(kwargs["connection"])  # RQ's constructor already talks to Redis
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
    wait_for_redis(redis)
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


def wait_for_redis(redis: Redis) -> None:
    """Return once Redis answers; meanwhile say once (and again if the reason changes) what is wrong."""
    delay, said, since = RETRY_FIRST, "", time.monotonic()
    while True:
        try:
            redis.ping()
        except RedisError as exc:
            reason = problem(exc)
            if reason != said:
                log.error("redis at %s: %s; retrying with backoff (every %.0f s at most)",
                          address(redis), reason, RETRY_MAX)
                said = reason
            time.sleep(delay)
            delay = min(2 * delay, RETRY_MAX)
            continue
        if said:
            log.info("redis at %s answers after %.0f s; starting", address(redis), time.monotonic() - since)
        return


def live_workers(redis: Redis, host: str | None = None) -> list[Worker]:
    """RQ workers of ``host`` (this machine or container) whose process lives and that heartbeated lately.

    For ``syncbridge worker --check``, a container health check: it runs beside the worker, so the
    hostname is the worker's and its processes are visible; a registration left behind by a worker
    that died (same hostname after a container restart) does not count.
    """
    host = host or socket.gethostname()
    now = datetime.now(UTC)
    return [worker for worker in Worker.all(connection=redis)
            if worker.hostname == host and worker.last_heartbeat is not None
            and (now - worker.last_heartbeat).total_seconds() < ALIVE_WITHIN
            and worker.pid is not None and _process_exists(worker.pid)]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
