"""Telling people: chat webhooks through apprise, any other URL as a JSON POST of the job.

After each state change the worker snapshots the job (as ``GET /jobs/<id>`` shows it) and
enqueues one ``send`` per matching ``notify`` rule on a queue of its own, with RQ's Retry: a
chat outage is retried a few times and can neither delay nor change the sync's outcome.

The snapshot comes from the stored record, scrubbed of secrets already (``bridge.store.encode``);
it is scrubbed again as it is queued and as it leaves, so a channel added here, or a credential
minted after it was stored, cannot let one through (``bridge.redact``).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import apprise
import requests
from redis import Redis
from rq import Queue, Retry

from bridge import metrics, redact
from bridge.queueing import NOTIFY_QUEUE_NAME
from bridge.store import public
from workers.context import context

log = logging.getLogger("syncbridge.notify")
RETRY = Retry(max=3, interval=[5, 30, 120])
EMOJI = {"queued": "🕓", "in_progress": "🔄", "completed": "✅", "failed": "❌"}


class NotificationFailed(Exception):
    """The receiver did not take the message; RQ retries the send."""


def announce(redis: Redis, job: dict[str, Any]) -> None:
    """Enqueue a notification of ``job``'s current state for every rule that wants it."""
    snapshot = redact.scrub(public(job))
    rules = [index for index, rule in enumerate(context().config.notify) if snapshot["status"] in rule.on]
    if not rules:
        return
    queue = Queue(NOTIFY_QUEUE_NAME, connection=redis)
    for index in rules:
        queue.enqueue("workers.notify.send", snapshot, index, retry=RETRY, result_ttl=600,
                      failure_ttl=7 * 86400, description=f"notify {snapshot['status']} of {snapshot['id']}")


def send(snapshot: dict[str, Any], index: int) -> None:
    """Deliver one notification; raise (so RQ retries) when the receiver refuses it."""
    ctx = context()
    url = str(ctx.config.notify[index].url)
    chat = apprise.Apprise()
    try:
        if chat.add(url):
            title, body = redact.scrub(message(snapshot))
            if not chat.notify(title=title, body=body):
                raise NotificationFailed(f"the {_service(chat)} webhook refused the message")
        else:
            response = requests.post(url, json=redact.scrub(snapshot), timeout=10,
                                     headers={"User-Agent": "syncbridge", "X-Syncbridge-Event": "job"})
            if response.status_code >= 300:
                raise NotificationFailed(f"{urlsplit(url).hostname} answered {response.status_code}")
    except (NotificationFailed, requests.RequestException) as exc:
        metrics.count_best_effort(_redis(), "notifications", outcome="failed")
        reason = redact.scrub(str(exc))
        log.warning("notification %d for job %s failed: %s", index, snapshot["id"], reason)
        raise NotificationFailed(reason) from None
    metrics.count_best_effort(_redis(), "notifications", outcome="sent")


def message(job: dict[str, Any]) -> tuple[str, str]:
    """Title and text for chat: repo, ref, short sha, target, outcome, duration, reason, link."""
    ref = (job["ref"] or "").removeprefix("refs/heads/")  # a reconcile has none
    mirror = f" {job['mirror']}" if job.get("mirror") else ""  # a templated target's, named after the repository
    title = f"{EMOJI.get(job['status'], '')} {job['target']}: {job['repo']}@{ref} {job['status'].replace('_', ' ')}"
    lines = [f"{job['repo']} {job['ref']} ({(job['after'] or '')[:7]}) → {job['target']} ({job['provider']}{mirror}): "
             f"{job['status'].replace('_', ' ')}" + (f" in {duration(job)}" if job.get("finished_at") else "")]
    if job["status"] == "failed" and job.get("error"):
        lines.append(f"Reason: {job['error'][:500]}")
    lines.append(f"Job: {public_url()}/jobs/{job['id']}")
    return title.strip(), "\n".join(lines)


def duration(job: dict[str, Any]) -> str:
    start = job.get("started_at") or job["created_at"]
    seconds = (_parse(job["finished_at"]) - _parse(start)).total_seconds()
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def public_url() -> str:
    """Where people reach the bridge: ``SYNCBRIDGE_PUBLIC_URL``, else the local web port."""
    return os.environ.get("SYNCBRIDGE_PUBLIC_URL", f"http://127.0.0.1:{os.environ.get('PORT', 8000)}").rstrip("/")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _service(chat: apprise.Apprise) -> str:
    return next((server.service_name for server in chat), "chat")


def _redis() -> Redis:
    from rq import get_current_job

    current = get_current_job()
    assert current is not None
    return current.connection
