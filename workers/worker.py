"""``syncbridge worker``: RQ workers with their scheduler, tuned so follow-ups are not late and a
dead worker's jobs are taken over in seconds.

RQ's defaults suit long jobs; ours are short and rescheduled, and a killed worker must cost seconds,
not minutes. So each worker keeps its RQ key alive from a thread of its own, with a short TTL
(``WORKER_KEY_TTL``): the key lives as long as the process, however long its provider call takes,
and expires seconds after a SIGKILL or an OOM kill. Every maintenance pass (at start, then every
``MAINTENANCE_INTERVAL`` seconds, between waits on the queues) first takes over from dead workers
(``workers.recovery``): their started jobs are requeued and their scheduler's lock released, then
RQ's own cleanup runs.

Jobs run in-process (``SimpleWorker``): no fork per execution, HTTP sessions and token caches
live as long as the worker. Several processes (RQ's ``WorkerPool``) keep one slow provider from
holding up the others: each execution is one HTTP call bounded by the target's
``request_timeout``, so a slow provider occupies at most one process at a time per call.

Memory (docs/RELIABILITY.md, "Worker memory"): the pool's supervising process holds RQ and redis-py
and little else, since every page it holds is counted again in each process it forks; a worker
process loads the config and the rest of the worker at its first maintenance pass, a provider's
libraries (google-auth) with its first job for that provider, apprise with its first chat
notification. RQ's scheduler runs on a thread of the worker that holds its locks
(:class:`ThreadScheduler`) rather than in a process of its own.

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
import threading
import time
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker, worker_registration
from rq.job import Job, Retry
from rq.job_lifecycle import call_exception_handlers
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.worker_pool import WorkerPool

from bridge import redact
from bridge.connection import address, connect, problem
from bridge.queues import NOTIFY_QUEUE_NAME, QUEUE_NAME
from workers.recovery import expire_dead_executions, release_stale_scheduler_locks, requeue_lost_jobs

WORKER_KEY_TTL = 10  # a worker's RQ key outlives its process by at most this: then its jobs are requeued
HEARTBEAT_EVERY = 2  # ...refreshed this often, from a thread of the worker, whatever the worker is doing
DEQUEUE_TIMEOUT = 3  # an idle worker waits on the queues this long between maintenance passes
WORKER_TTL = DEQUEUE_TIMEOUT + 15  # RQ's setting: it waits on the queues for worker_ttl - 15 s
MAINTENANCE_INTERVAL = 3  # seconds between a worker's maintenance passes (dead workers first, then RQ's)
MAINTENANCE_LOCK_TTL = 10  # RQ's cleanup lock of a queue: 899 s if its holder dies mid-pass; ours lapses soon
SCHEDULER_STOP = 3  # seconds to wait for the scheduler thread to stop (it checks every second)
QUEUES = (QUEUE_NAME, NOTIFY_QUEUE_NAME)  # syncs first
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between attempts to reach Redis, doubling
ALIVE_WITHIN = WORKER_KEY_TTL  # a live worker heartbeats every HEARTBEAT_EVERY s

log = logging.getLogger("syncbridge.worker")


class SyncQueue(Queue):
    """RQ's queue, with a short lock for cleaning its registries.

    RQ takes that lock for 899 s and releases it when the cleanup is done: a worker killed during
    one (it lasts milliseconds, every few seconds) would stop every worker's cleanup, and with it
    the requeueing of abandoned jobs, for 15 minutes.
    """

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_TTL))


class ThreadScheduler(RQScheduler):
    """RQ's scheduler on a thread of the worker that holds its locks, not in a process of its own.

    A process costs about 30 MiB of RSS (its own copy of Python, redis-py and RQ); a thread next to
    nothing, and the scheduler sleeps a second between two short looks at Redis. It stops when
    asked (``request_stop``: it releases its locks), and RQ's maintenance starts it again when it
    ended (a Redis outage ends it), as it would a process.
    """

    def start(self) -> threading.Thread:
        self._status = self.Status.STARTED
        thread = threading.Thread(target=self._run, name="rq-scheduler", daemon=True)
        self._process = thread  # type: ignore[assignment]  # RQ only asks it is_alive()
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            self.work()
        except RedisError as exc:
            log.warning("scheduler stopped: %s; the worker's next maintenance pass starts it again", problem(exc))

    def _install_signal_handlers(self) -> None:
        """Signals reach the worker's main thread, which stops this one (``SyncWorker.stop_scheduler``)."""


class SyncWorker(SimpleWorker):
    """RQ's in-process worker with syncbridge's timings (WorkerPool builds workers by class)."""

    queue_class = SyncQueue

    def __init__(self, *args: Any, **kwargs: Any):
        wait_for_redis(kwargs["connection"])  # RQ's constructor already talks to Redis
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)
        self._rescheduling = False
        self._heartbeat: Heartbeat | None = None
        self._tick_ensured = False

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, always with the short TTL (RQ asks for the job's whole limit plus 60 s)."""
        super().heartbeat(WORKER_KEY_TTL, pipeline)

    def beat(self) -> None:
        """One heartbeat of :class:`Heartbeat`; a key that expired meanwhile (Redis was away longer
        than its TTL) is written whole again, as RQ's registration left it."""
        with self.connection.pipeline() as pipeline:
            self.heartbeat(pipeline=pipeline)
            created = pipeline.execute()[0]
        if created:
            with self.connection.pipeline() as pipeline:
                pipeline.hset(self.key, mapping=self.serialize())
                pipeline.expire(self.key, WORKER_KEY_TTL)
                worker_registration.register(self, pipeline)
                pipeline.execute()

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", *_: Any) -> None:
        """RQ's start of the scheduler (by whichever worker takes its locks), on a :class:`ThreadScheduler`."""
        self.scheduler = ThreadScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                         logging_level=logging_level or "INFO")
        if not burst:
            self.scheduler.acquire_locks(auto_start=True)
        elif self.scheduler.acquire_locks():  # a burst: what is due now, once, as RQ does
            try:
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()

    def stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler._process is not None:
            self.scheduler.request_stop()
            self.scheduler._process.join(timeout=SCHEDULER_STOP)

    def run_maintenance_tasks(self) -> None:
        """Take over from dead workers (their scheduler's lock here, their jobs in ``clean_registries``),
        then RQ's maintenance, which restarts this worker's scheduler if it is not running.

        Redis unreachable meanwhile (a restart, a failover) skips the pass: the wait on the queues
        that follows says so and waits for Redis, and the next pass runs in full. RQ's first pass
        would otherwise end the worker process with a traceback.
        """
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self)
            self._heartbeat.start()
        try:
            if not self._tick_ensured:
                from workers.periodic import ensure_tick  # the config and the rest of the worker load here

                ensure_tick(self.connection)
                self._tick_ensured = True
            release_stale_scheduler_locks(self.connection, self.queue_names())
            super().run_maintenance_tasks()
        except RedisError as exc:
            log.debug("worker %s: maintenance skipped: %s", self.name, problem(exc))

    def clean_registries(self) -> None:
        """Expire the executions of dead workers first, so RQ's cleanup requeues them in this same pass,
        and put back what a dead worker popped but never started."""
        from workers.periodic import TICK_ID  # loaded by the first pass already

        for queue in self.queues:
            expire_dead_executions(queue)
            if queue.name == QUEUE_NAME:
                requeue_lost_jobs(queue, also=(TICK_ID,))
        super().clean_registries()

    def teardown(self) -> None:
        if self._heartbeat is not None:  # stopped first: no heartbeat may follow RQ's record of the death
            self._heartbeat.stopped.set()
            self._heartbeat.join(timeout=HEARTBEAT_EVERY + 1)
        super().teardown()

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
        from workers.jobs import SyncFailed  # loaded already: the job that raised it imported it

        if isinstance(exc_info[1], SyncFailed):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "",
                           execution: Any = None) -> None:
        """RQ keeps a failed execution's traceback in Redis: scrubbed first, like all we store."""
        super().handle_job_failure(job, queue, started_job_registry, redact.scrub(exc_string), execution)


def run(burst: bool = False, processes: int = 1, redis_url: str | None = None) -> None:
    """Work the queues until stopped (or, with ``burst``, until they are empty).

    The caller has checked the config; each worker process loads it at its first maintenance pass.
    """
    redis = connect(redis_url, blocking=True)
    wait_for_redis(redis)
    # RQ lists a queue (``rq info``, rq-dashboard) once something was enqueued on it; the notify
    # queue may stay empty for days, and both belong in the list from the start.
    redis.sadd(Queue.redis_queues_keys, *(SyncQueue(name, connection=redis).key for name in QUEUES))
    logging.getLogger("rq.worker").addFilter(quiet_maintenance)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    if processes <= 1:
        worker = SyncWorker([SyncQueue(name, connection=redis) for name in QUEUES], connection=redis)
        worker.work(burst=burst, with_scheduler=True, logging_level=level)
    else:
        WorkerPool(list(QUEUES), connection=redis, num_workers=processes, worker_class=SyncWorker,
                   queue_class=SyncQueue).start(burst=burst, logging_level=level)


def quiet_maintenance(record: logging.LogRecord) -> bool:
    """Drop RQ's line for each registry cleanup: every few seconds per worker and queue now, saying nothing."""
    return not str(record.msg).startswith(("Worker %s: cleaning registries", "Worker %s: cleaning group registries"))


class Heartbeat(threading.Thread):
    """Refreshes a worker's RQ key every ``HEARTBEAT_EVERY`` s, whatever the worker is doing meanwhile
    (a provider call of up to ``request_timeout``): the key lives exactly as long as the process,
    give or take ``WORKER_KEY_TTL``, so a dead worker is found in seconds and a slow one never is."""

    def __init__(self, worker: SyncWorker):
        super().__init__(name="syncbridge-heartbeat", daemon=True)
        self.worker = worker
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_EVERY):
            try:
                self.worker.beat()
            except RedisError as exc:  # the worker's own loop reports an unreachable Redis, and waits for it
                log.debug("heartbeat of worker %s failed: %s", self.worker.name, problem(exc))


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
