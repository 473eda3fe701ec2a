"""The worker's periodic duties: redelivery sweeps and reconcile syncs.

One RQ job, ``syncbridge-tick``, runs every TICK seconds for the whole cluster: it is created
with a fixed id and RQ's ``unique=True`` (so several workers starting at once make one), and it
reschedules itself by returning ``rq.Retry``, like a sync that polls. Each tick runs what is due:
a source's sweep every ``sweep_every``, a target's reconcile every ``reconcile_every``. A
reconcile goes through the same dedupe and coalescing as a push (its delivery key is one per
period, and it is skipped while a sync for the target already waits), so it never doubles one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from bridge.queueing import QUEUE_NAME, Enqueuer
from bridge.routing import Match
from bridge.store import NEXT_RECONCILE_KEY, NEXT_SWEEP_KEY, Store
from workers.context import context
from workers.jobs import UNBOUNDED
from workers.sweep import sweep_all

log = logging.getLogger("syncbridge.periodic")
TICK_ID = "syncbridge-tick"
TICK = int(os.environ.get("SYNCBRIDGE_TICK_SECONDS", 15))  # the resolution of sweeps and reconciles


def ensure_tick(redis: Redis) -> None:
    """Make sure the cluster's tick job exists (called by every worker at start)."""
    if not _has_periodic_work():
        return
    try:
        job = Job.fetch(TICK_ID, connection=redis)
        if job.get_status() not in (JobStatus.FAILED, JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.CANCELED):
            return
        job.delete()
    except NoSuchJobError:
        pass
    with contextlib.suppress(DuplicateJobError):  # another worker made it first
        Queue(QUEUE_NAME, connection=redis).enqueue("workers.periodic.tick", job_id=TICK_ID, unique=True,
                                                    retry=Retry(max=UNBOUNDED, interval=[TICK]),
                                                    description="syncbridge periodic sweeps and reconciles")


def tick() -> Retry:
    """Run what is due, never raising (a crash here would stop every future tick)."""
    try:
        run_due(time.time())
    except Exception:
        log.exception("periodic tick failed; trying again in %ds", TICK)
    return Retry(max=UNBOUNDED, interval=[TICK])


def run_due(now: float) -> None:
    ctx = context()
    current = get_current_job()
    assert current is not None
    store = Store(current.connection, ctx.config.retention)
    sweeps = store.schedules(NEXT_SWEEP_KEY)
    due = [name for name, source in ctx.config.sources.items()
           if source.api is not None and sweeps.get(name, 0) <= now]
    if due:
        sweep_all(ctx.config, store)
        for name in due:
            store.schedule(NEXT_SWEEP_KEY, name, now + ctx.config.sources[name].api.sweep_every)  # type: ignore[union-attr]
    reconciles = store.schedules(NEXT_RECONCILE_KEY)
    for name, target in ctx.config.targets.items():
        if target.reconcile_every is None:
            continue
        when = reconciles.get(name)
        if when is None:  # first sight: the first reconcile is one period from now
            store.schedule(NEXT_RECONCILE_KEY, name, now + target.reconcile_every)
        elif when <= now:
            reconcile(store, name, now)
            store.schedule(NEXT_RECONCILE_KEY, name, now + target.reconcile_every)


def reconcile(store: Store, target: str, now: float) -> list[str]:
    """Enqueue a reconcile sync of ``target`` unless one for it already waits; its job ids."""
    if store.lane_waiting(target):
        log.info("reconcile of %s skipped: a sync already waits", target, extra={"target": target})
        return []
    config = context().config
    period = config.targets[target].reconcile_every or 1
    key = f"reconcile:{target}:{math.floor(now / period)}"
    receipt = Enqueuer(store.redis, config.retention).enqueue(
        "", "", key, [Match(target, None, None)], config.targets, trigger="reconcile")
    log.info("reconcile of %s queued: %s", target, ",".join(receipt.job_ids), extra={"target": target})
    return receipt.job_ids


def _has_periodic_work() -> bool:
    config = context().config
    return any(s.api for s in config.sources.values()) or any(t.reconcile_every for t in config.targets.values())
