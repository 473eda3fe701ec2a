"""The worker's periodic duties: ending orphaned jobs, redelivery sweeps and reconcile syncs.

One RQ job, ``syncbridge-tick``, runs every TICK seconds for the whole cluster: it is created
with a fixed id and RQ's ``unique=True`` (so several workers starting at once make one), and it
reschedules itself by returning ``rq.Retry``, like a sync that polls. Each tick first ends the
jobs RQ can no longer run (deleted or cancelled with RQ's own tools), then runs what is due: a
source's sweep every ``sweep_every``, a target's reconcile every ``reconcile_every``. A
reconcile goes through the same dedupe and coalescing as a push (its delivery key is one per
period and mirror, and it is skipped while a sync for the mirror already waits), so it never
doubles one; a templated target reconciles each repository pushed through it within the retention.
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
from bridge.store import NEXT_RECONCILE_KEY, NEXT_SWEEP_KEY, Store, lanes_key
from workers.context import context
from workers.jobs import UNBOUNDED, end
from workers.sweep import sweep_all

log = logging.getLogger("syncbridge.periodic")
TICK_ID = "syncbridge-tick"
TICK = int(os.environ.get("SYNCBRIDGE_TICK_SECONDS", 15))  # the resolution of sweeps, reconciles and orphan checks


def ensure_tick(redis: Redis) -> None:
    """Make sure the cluster's tick job exists (called by every worker at start)."""
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
    end_orphans(store)
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
    """Enqueue a reconcile sync of ``target``'s mirror, or of each of a templated target's mirrors;
    their job ids.

    A mirror for which a sync already waits is skipped: that sync covers it. A templated target
    names no mirror until a push fills it, so it reconciles the repositories pushed through it
    within the retention (``Store.seen``, the most recent ``SEEN_LIMIT``), each its own job.
    """
    config = context().config
    settings = config.targets[target]
    repos = store.seen(target) if settings.templated else [""]
    if not repos:
        log.warning("reconcile of %s: nothing to sync: it is templated (its mirror is named after the pushed "
                    "repository) and no push went through it within the retention (%g days); each repository "
                    "pushed from now on is reconciled too", target, config.retention / 86400, extra={"target": target})
        return []
    enqueuer = Enqueuer(store.redis, config.retention)
    mirrors = [enqueuer.mirrors.key(target, settings, repo) for repo in repos]
    pipe = store.redis.pipeline(transaction=False)
    for mirror in mirrors:
        pipe.hlen(lanes_key(mirror))
    period = math.floor(now / (settings.reconcile_every or 1))
    deliveries = []
    for repo, mirror, waiting in zip(repos, mirrors, pipe.execute(), strict=True):
        if waiting:
            log.info("reconcile of %s skipped: a sync already waits", mirror, extra={"target": target})
            continue
        key = f"reconcile:{target}:{repo}:{period}" if repo else f"reconcile:{target}:{period}"
        deliveries.append(enqueuer.prepare("", repo, key, [Match(target, None, None)], config.targets,
                                           trigger="reconcile"))
    job_ids = [job_id for receipt in enqueuer.commit(deliveries) for job_id in receipt.job_ids] if deliveries else []
    if job_ids:
        log.info("reconcile of %s queued: %s", target, ",".join(job_ids), extra={"target": target})
    return job_ids


# Why a job RQ can no longer run ended, by RQ's status of it ('' when RQ's job is gone).
ORPHAN_REASONS = {
    "": "its RQ job was deleted outside syncbridge (e.g. with rq-dashboard or Job.delete())",
    "canceled": "its RQ job was cancelled outside syncbridge (e.g. with rq-dashboard or Job.cancel())",
    "stopped": "its RQ job was stopped outside syncbridge (rq's stop-job command)",
}


def end_orphans(store: Store) -> list[str]:
    """End as failed every job still queued or running by its record that RQ can no longer run.

    Such a job would otherwise stay queued for ``retention``, holding its lane; failed, it shows
    why, frees its lane, and can be retried. Returns the ids ended.
    """
    ended = []
    for job_id, rq_status in store.orphans():
        reason = ORPHAN_REASONS.get(rq_status, f"RQ ended its job as {rq_status} without syncbridge hearing of it")
        end(store, job_id, "failed", f"{reason}; retry runs it again")
        ended.append(job_id)
    return ended
