"""Drive jobs through a real RQ worker in this process, without waiting out their intervals.

RQ runs each execution for real (queue, worker, job hash, Retry handling, scheduled registry);
where RQ's scheduler would wait N seconds before running a job again, the driver records N and
re-enqueues the job at once, so tests assert the backoff without sleeping through it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from bridge.queueing import QUEUE_NAME


def drive(redis: Redis, max_rounds: int = 60, *, until_idle: bool = True) -> list[float]:
    """Run the queue until no job is queued or scheduled; return every scheduled interval (s).

    With ``until_idle=False`` it stops quietly after ``max_rounds`` worker passes.
    """
    queue = Queue(QUEUE_NAME, connection=redis)
    registry = ScheduledJobRegistry(queue=queue)
    intervals: list[float] = []
    for _ in range(max_rounds):
        SimpleWorker([queue], connection=redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
        due = registry.get_job_ids()
        if not due:
            return intervals
        for job_id in due:
            at = registry.get_scheduled_time(job_id)
            intervals.append((at - datetime.now(UTC)).total_seconds())
            registry.remove(job_id)
            queue.enqueue_job(Job.fetch(job_id, connection=redis))
    if until_idle:
        raise AssertionError(f"jobs still scheduled after {max_rounds} rounds")
    return intervals
