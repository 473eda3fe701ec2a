"""The RQ entry point: one job per sync, re-run by RQ until the provider's operation ends.

Each execution does one provider call: the trigger the first time, a poll afterwards. While the
operation runs, or after a transient failure, the job returns ``rq.Retry`` with the next
interval, so RQ's scheduler runs it again later and no worker waits in between.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from bridge import metrics, mirrors
from bridge.queueing import QUEUE_NAME
from bridge.store import TERMINAL, Store, epoch, now_iso
from workers import notify
from workers.context import context
from workers.providers import PROVIDERS
from workers.providers.base import Http, Permanent, ProviderError, Remote, Transient

log = logging.getLogger("syncbridge.worker")
# RQ counts returned Retry objects against ``max``; the job bounds itself by time and retries.
UNBOUNDED = 10**9  # RQ counts returned Retry objects against max; ours are bounded by time instead
POLL_INTERVALS = (1, 1, 2, 3, 5, 8, 10, 15)
BACKOFF_BASE, BACKOFF_CAP = 2.0, 300.0


class SyncFailed(Exception):
    """The sync ended failed, as its record says: raised so that RQ, too, counts the job as failed
    and lists it in its failed registry (to RQ, a job that returns has succeeded)."""


def sync(job_id: str | None = None) -> Retry | None:
    """Trigger or follow the provider sync of this RQ job; return a Retry while it is not done.

    The record shares the RQ job's id, so the job carries no arguments and every sync job's RQ
    hash is the same but for its id (``bridge.queueing`` builds it once). ``job_id`` is only
    passed by jobs queued before that change, still in Redis after an upgrade.
    """
    current = _current()
    try:
        return _step(current, job_id or current.id)
    except SyncFailed:
        current.retries_left = 0  # the outcome is recorded: RQ must not run the job again
        raise


def _step(current: Job, job_id: str) -> Retry | None:
    """One execution: start, trigger or poll; raises SyncFailed once the sync has failed."""
    ctx = context()
    store = Store(current.connection, ctx.config.retention)
    job = store.get(job_id)
    if job is None or job["status"] in TERMINAL:
        return None
    configured = ctx.config.targets.get(job["target"])
    if configured is None:
        raise _fail(store, job_id, f"target {job['target']!r} is no longer in the config")
    try:
        target = mirrors.render(configured, job["repo"] or "")  # a templated target: this repository's mirror
    except mirrors.UnusableName as exc:
        raise _fail(store, job_id, str(exc)) from None
    if job["status"] == "queued":
        outcome, wait = store.start(job_id, target.min_interval, running_ttl=target.timeout + 300)
        if outcome == "wait":  # the mirror is busy: stay queued (later pushes join this job), ask again
            return Retry(max=UNBOUNDED, interval=[max(1, math.ceil(wait))])
        if configured.templated and job["trigger"] == "push":  # what the target's reconciles will sync
            store.note_seen(job["target"], job["repo"])
        job = store.get(job_id) or job
        notify.announce(store.redis, job)
    elif _elapsed(job) > target.timeout:  # e.g. every execution so far died with its worker
        raise _fail(store, job_id, f"gave up after {int(target.timeout)}s: the sync never ended "
                    f"(last error: {job.get('last_error') or 'none'})")
    provider = PROVIDERS[target.provider]
    http = ctx.http(job["target"])
    fields = {"job": job_id, "target": job["target"], "provider": job["provider"], "delivery": job["delivery"]}
    try:
        if job.get("remote") is None:
            store.increment(job_id, "attempts")
            with _call(store, job_id, "trigger", http, fields) as call:
                remote = call.answered(provider.trigger(target, job, http))
        else:
            store.increment(job_id, "polls")
            with _call(store, job_id, "poll", http, fields) as call:
                remote = call.answered(provider.poll(target, job, Remote.from_json(job["remote"]), http))
    except Transient as exc:
        return _after_transient(store, job, target.retries, target.timeout, exc.reason, exc.retry_after)
    except Permanent as exc:
        raise _fail(store, job_id, exc.reason) from None
    store.update(job_id, remote=remote.to_json(), errors=0)
    if remote.state == "completed":
        end(store, job_id, "completed")
        return None
    if remote.state == "failed":
        raise _fail(store, job_id, remote.error or f"provider status {remote.status}")
    if _elapsed(job) > target.timeout:
        raise _fail(store, job_id, f"gave up after {int(target.timeout)}s: the provider still says {remote.status!r}")
    polls = int(job.get("polls") or 0)
    interval = POLL_INTERVALS[min(polls, len(POLL_INTERVALS) - 1)]
    if remote.retry_after is not None:  # the provider asked us to slow down
        interval = max(interval, math.ceil(remote.retry_after))
    return Retry(max=UNBOUNDED, interval=[interval])


class _Call:
    """One provider call as the job's history keeps it (``Store.record_call``) and the log says it."""

    def __init__(self, kind: str):
        self.record: dict[str, Any] = {"at": now_iso(), "kind": kind, "http": None}
        self.statuses: list[int] = []  # of every HTTP answer during the call: the last is the call's

    def answered(self, remote: Remote) -> Remote:
        self.record.update(state=remote.state, word=remote.status, error=remote.error)
        return remote

    def heard(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: note the status of each answer."""
        self.statuses.append(response.status_code)


@contextmanager
def _call(store: Store, job_id: str, kind: str, http: Http, fields: dict[str, Any]) -> Iterator[_Call]:
    """Make one provider call inside this block; it is recorded in the job's history however it ends:
    when, trigger or poll, the HTTP status, the provider's state and own word (or the error), how long."""
    call = _Call(kind)
    hooks = http.session.hooks["response"]
    hooks.append(call.heard)
    started = time.monotonic()
    try:
        yield call
    except ProviderError as exc:
        call.record.update(state="transient" if isinstance(exc, Transient) else "permanent", word=None,
                           error=exc.reason)
        raise
    finally:
        hooks.remove(call.heard)
        duration = time.monotonic() - started
        call.record.update(http=call.statuses[-1] if call.statuses else None, ms=round(duration * 1000))
        store.record_call(job_id, call.record)
        # The trigger is news (a line per sync); a poll is routine (a line per poll, at DEBUG).
        log.log(logging.INFO if kind == "trigger" else logging.DEBUG, "job=%s target=%s %s: HTTP %s, %s in %.3f s",
                job_id, fields["target"], "triggered" if kind == "trigger" else "polled", call.record["http"],
                call.record.get("word") or call.record.get("error"), duration,
                extra={**fields, "http_status": call.record["http"], "duration": round(duration, 3)})


def on_failure(job: Job, connection: Any, exc_type: type, exc_value: BaseException, traceback: Any) -> None:
    """RQ's failure callback: the sync ends failed once RQ will not run it again.

    RQ calls this on every failed execution (a crash in our code, a worker killed mid-job and
    found abandoned); while retries are left, RQ runs the job again and the record stays as is.
    """
    if job.retries_left:
        return
    store = Store(connection, context().config.retention)
    record = store.get(job.id)
    if record is not None and record["status"] not in TERMINAL:
        end(store, job.id, "failed", f"worker error: {exc_type.__name__}: {exc_value}")


def _after_transient(store: Store, job: dict[str, Any], retries: int, timeout: float, reason: str,
                     retry_after: float | None) -> Retry:
    """Back off (honouring Retry-After) and run again, or fail once retries or time run out."""
    errors = store.increment(job["id"], "errors")
    if errors > retries:
        raise _fail(store, job["id"], f"{reason} (gave up after {errors} tries)")
    delay = backoff(errors, retry_after)
    if _elapsed(job) + delay > timeout:
        raise _fail(store, job["id"], f"{reason} (gave up: the target's timeout of {int(timeout)}s ran out)")
    log.warning("job=%s retry %d/%d in %ds: %s", job["id"], errors, retries, delay, reason,
                extra={"job": job["id"], "target": job["target"], "provider": job["provider"],
                       "delivery": job["delivery"]})
    store.update(job["id"], last_error=reason)
    metrics.count_best_effort(store.redis, "retries", target=job["target"], provider=job["provider"])
    return Retry(max=UNBOUNDED, interval=[delay])


def backoff(errors: int, retry_after: float | None) -> int:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""
    exponential = min(BACKOFF_CAP, BACKOFF_BASE ** (errors - 1))
    delay = random.uniform(exponential / 2, exponential)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, math.ceil(delay))


def end(store: Store, job_id: str, status: str, reason: str | None = None) -> None:
    """Record the outcome, wake the mirror's next sync, count it, and tell whoever asked to be told."""
    mirror = store.finish(job_id, status, error=reason)
    if mirror:
        _wake(store, mirror)
    job = store.get(job_id)
    if job is None:
        return
    duration = _elapsed(job, until=job["finished_at"])
    context_fields = {"job": job_id, "target": job["target"], "delivery": job["delivery"], "repo": job["repo"],
                      "provider": job["provider"], "status": status, "duration": round(duration, 3)}
    if reason:
        log.warning("job=%s target=%s %s: %s", job_id, job["target"], status, reason, extra=context_fields)
    else:
        log.info("job=%s target=%s %s", job_id, job["target"], status, extra=context_fields)
    metrics.count_best_effort(store.redis, "jobs_finished", target=job["target"], status=status)
    metrics.observe(store.redis, "sync_duration_seconds", duration, provider=job["provider"], target=job["target"])
    notify.announce(store.redis, job)


def _fail(store: Store, job_id: str, reason: str) -> SyncFailed:
    """Record the failure; the caller raises what this returns, so RQ sees it too."""
    end(store, job_id, "failed", reason)
    return SyncFailed(reason)


def _wake(store: Store, mirror: str) -> None:
    """Run the mirror's next waiting sync now rather than at its next scheduled check.

    One job of one lane: the others ask again on their own schedule, and would only find the
    mirror busy with the one woken here.
    """
    queue = Queue(QUEUE_NAME, connection=store.redis)
    scheduled = ScheduledJobRegistry(queue=queue)
    for waiting in store.waiting_jobs(mirror):
        if scheduled.remove(waiting):
            with contextlib.suppress(NoSuchJobError):  # deleted with RQ's tools meanwhile
                queue.enqueue_job(Job.fetch(waiting, connection=store.redis))
                return
        elif store.redis.hget(Job.key_for(waiting), "status") == JobStatus.QUEUED.value.encode():
            return  # already in the queue: it starts next
        # else running right now (it will find the mirror busy) or gone from RQ: try the next lane's


def _elapsed(job: dict[str, Any], until: str | None = None) -> float:
    """Seconds since the sync started (or until ``until``)."""
    started = job.get("started_at") or job["created_at"]
    end = epoch(until) if until else time.time()
    return end - epoch(started)


def _current() -> Job:
    current = get_current_job()
    if current is None:
        raise RuntimeError("workers.jobs.sync runs inside an RQ worker")
    return current

