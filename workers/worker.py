"""``syncbridge worker``: an RQ worker with its scheduler, tuned so follow-ups are not late.

RQ's defaults suit long jobs; ours are short and rescheduled, so the worker's TTL and
maintenance interval are lowered: an abandoned job (a killed worker) is found within about
a minute and a half, and the scheduler resumes promptly after Redis returns.
"""

from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from bridge.connection import connect
from bridge.queueing import NOTIFY_QUEUE_NAME, QUEUE_NAME
from workers.context import context

WORKER_TTL = 60
MAINTENANCE_INTERVAL = 30
JOB_MONITORING_INTERVAL = 10


def run(burst: bool = False, redis_url: str | None = None) -> bool:
    """Work the syncbridge queue until stopped (or, with ``burst``, until it is empty)."""
    context()  # fail fast on a bad config, before taking any job
    import workers.jobs  # noqa: F401  (imported now, not on the first push: keeps its latency low)
    redis = connect(redis_url, blocking=True)
    queues = [Queue(name, connection=redis) for name in (QUEUE_NAME, NOTIFY_QUEUE_NAME)]  # syncs first
    worker = SimpleWorker(queues, connection=redis, worker_ttl=WORKER_TTL,
                          maintenance_interval=MAINTENANCE_INTERVAL,
                          job_monitoring_interval=JOB_MONITORING_INTERVAL)
    return worker.work(burst=burst, with_scheduler=True, logging_level=logging.getLevelName(
        logging.getLogger().getEffectiveLevel()))
