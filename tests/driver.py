"""Drive jobs through a real RQ worker in this process, without waiting out their intervals.

RQ runs each execution for real (queue, worker, job hash, Retry handling, scheduled registry);
where RQ's scheduler would wait N seconds before running a job again, the driver records N and
re-enqueues the job at once, so tests assert the backoff without sleeping through it.
"""

from __future__ import annotations

import math
from datetime import UTC

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from bridge.queueing import NOTIFY_QUEUE_NAME, QUEUE_NAME


class _Worker(SimpleWorker):
    """A worker without RQ's pubsub listener: nothing sends it commands, and stopping the listener
    thread at the end of each pass can take a whole second (RQ joins it with a 1 s timeout)."""

    def subscribe(self) -> None:
        pass


def drive(redis: Redis, max_rounds: int = 60, *, until_idle: bool = True) -> list[int]:
    """Run the queues until no job is queued or scheduled; return each sync's scheduled intervals (s).

    With ``until_idle=False`` it stops quietly after ``max_rounds`` worker passes.
    """
    queues = [Queue(name, connection=redis) for name in (QUEUE_NAME, NOTIFY_QUEUE_NAME)]
    intervals: list[int] = []
    for _ in range(max_rounds):
        _Worker(queues, connection=redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
        due = [(queue, ScheduledJobRegistry(queue=queue)) for queue in queues]
        if not any(registry.count for _, registry in due):
            return intervals
        for queue, registry in due:
            for job_id in registry.get_job_ids():
                job = Job.fetch(job_id, connection=redis)
                if queue.name == QUEUE_NAME:  # the wait RQ was asked for, from the end of the execution;
                    # RQ floors schedule times to whole seconds, so round the difference back up.
                    at = registry.get_scheduled_time(job_id)
                    intervals.append(math.ceil((at - job.ended_at.replace(tzinfo=UTC)).total_seconds() - 1e-3))
                registry.remove(job_id)
                queue.enqueue_job(job)
    if until_idle:
        raise AssertionError(f"jobs still scheduled after {max_rounds} rounds")
    return intervals
