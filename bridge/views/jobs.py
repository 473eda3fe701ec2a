"""Jobs: ``/jobs/<id>`` (JSON, or the job's page for a browser), ``/jobs`` and retry (who may:
``bridge.views.auth``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify

from bridge import mirrors
from bridge.app import current
from bridge.store import TERMINAL, now_iso, public
from bridge.views import params
from bridge.views.pages import page, wants_html

bp = Blueprint("jobs", __name__)
MAX_LIMIT = 500
# Within one millisecond, what happens first in a job's life: a call can share its start's timestamp.
ORDER = {"queued": 0, "started": 1, "completed": 3, "failed": 3, "retry": 4}
STUCK = ("stuck: RQ can no longer run it (its RQ job was deleted, cancelled or ended outside syncbridge); "
         "retried by an operator")


@bp.get("/jobs/<job_id>")
def show(job_id: str):
    if wants_html():
        return page("job.html", lambda: job_page(job_id))
    return jsonify(public(_job(job_id)))


@bp.get("/jobs")
def index():
    limit = min(max(params.whole_number("limit", 50), 1), MAX_LIMIT)
    jobs = current().store.recent(status=params.status(), target=params.one("target"), repo=params.one("repo"),
                                  limit=limit)
    return jsonify(jobs=[public(job) for job in jobs])


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    """Re-run a failed job, or a stuck one (RQ can no longer run it): a state change, so Bearer or a
    same-origin JSON request (``bridge.views.auth``)."""
    bridge = current()
    job = _job(job_id)
    target = bridge.config.targets.get(job["target"])
    if target is None:
        return jsonify(error=f"target {job['target']!r} is no longer in the config"), 409
    if _stuck(job):  # what the periodic tick would do within 15 s, done now: end it, so it can run again
        bridge.store.finish(job_id, "failed", error=STUCK)
        job = _job(job_id)
    refused = bridge.enqueuer.requeue(job_id, target.request_timeout)
    if refused is not None:
        return jsonify(error=f"job {job_id} is {refused}; only a failed job (or a stuck one) can be retried"), 409
    # The run that failed keeps its place in the timeline: the record now describes the new run.
    for kind, at, error in (("started", job.get("started_at"), None), ("failed", job.get("finished_at"), job["error"]),
                            ("retry", now_iso(), None)):
        if at:
            bridge.store.record_call(job_id, {"at": at, "kind": kind, "error": error})
    return jsonify(public(bridge.store.get(job_id) or {})), 202


def job_page(job_id: str) -> dict[str, Any]:
    """What the job's page shows: the record, its timeline, the provider's words, the deliveries."""
    bridge = current()
    job = _job(job_id)
    stuck = _stuck(job)
    fed = bridge.deliveries.fed(bridge.redis, job["source"], job_id) if job.get("source") else []
    return {"job": job, "mirror": mirrors.shown(job), "timeline": timeline(job, bridge.store.calls(job_id)),
            "deliveries": fed, "stuck": stuck, "retryable": job["status"] == "failed" or stuck}


def timeline(job: dict[str, Any], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's life in order: queued, started, each provider call (and retry), ended."""
    events = [{"at": job["created_at"], "kind": "queued", "detail": "by a push" if job.get("delivery") else
               "by a reconcile"}]
    if job.get("started_at"):
        events.append({"at": job["started_at"], "kind": "started", "detail": "a worker took it"})
    events += [{**call, "detail": call.get("word") or call.get("error") or
                ("by an operator" if call["kind"] == "retry" else "")} for call in calls]
    if job.get("finished_at"):
        events.append({"at": job["finished_at"], "kind": job["status"], "detail": job.get("error") or ""})
    return sorted(events, key=lambda event: (event["at"] or "", ORDER.get(event["kind"], 2)))


def _job(job_id: str) -> dict[str, Any]:
    job = current().store.get(job_id)
    if job is None:
        abort(404, description=f"no job {job_id!r} (unknown, or expired)")
    return job


def _stuck(job: dict[str, Any]) -> bool:
    """Not ended, yet RQ cannot run it: nothing will move it until the periodic tick ends it."""
    return job["status"] not in TERMINAL and not current().store.alive_in_rq(job["id"])
