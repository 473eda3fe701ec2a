"""Jobs: ``/jobs/<id>``, ``/jobs``, ``/deliveries/<id>`` and retry (who may: ``bridge.views.auth``)."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from bridge.app import current
from bridge.config import JOB_STATES
from bridge.store import public

bp = Blueprint("jobs", __name__)
MAX_LIMIT = 500


@bp.get("/jobs/<job_id>")
def show(job_id: str):
    job = current().store.get(job_id)
    if job is None:
        abort(404, description=f"no job {job_id!r} (unknown, or expired)")
    return jsonify(public(job))


@bp.get("/jobs")
def index():
    status = request.args.get("status") or None
    if status is not None and status not in JOB_STATES:
        abort(400, description=f"status must be one of {', '.join(JOB_STATES)}")
    try:
        limit = min(int(request.args.get("limit", 50)), MAX_LIMIT)
    except ValueError:
        abort(400, description="limit must be a whole number")
    jobs = current().store.recent(status=status, target=request.args.get("target") or None,
                                  repo=request.args.get("repo") or None, limit=max(limit, 1))
    return jsonify(jobs=[public(job) for job in jobs])


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    """Re-run a failed job: a state change, so Bearer or a same-origin JSON request (``bridge.views.auth``)."""
    bridge = current()
    job = bridge.store.get(job_id)
    if job is None:
        abort(404, description=f"no job {job_id!r} (unknown, or expired)")
    target = bridge.config.targets.get(job["target"])
    if target is None:
        return jsonify(error=f"target {job['target']!r} is no longer in the config"), 409
    refused = bridge.enqueuer.requeue(job_id, target.request_timeout)
    if refused is not None:
        return jsonify(error=f"job {job_id} is {refused}; only failed jobs can be retried"), 409
    return jsonify(public(bridge.store.get(job_id) or {})), 202


@bp.get("/deliveries/<delivery>")
def delivery(delivery: str):
    """The jobs of a delivery id: of the source named by ``?source=``, else of every configured source.

    Delivery ids are unique per host only, so one id may have reached several sources; without
    ``?source=`` their jobs are listed together (each job names its source).
    """
    bridge = current()
    source = request.args.get("source") or None
    sources = [source] if source is not None else list(bridge.config.sources)
    found = bridge.store.deliveries(delivery, sources)
    if not found:
        where = f" from source {source!r}" if source is not None else ""
        abort(404, description=f"no delivery {delivery!r}{where} (unknown, ignored, or expired)")
    job_ids = [job_id for ids in found.values() for job_id in ids]
    return jsonify(delivery=delivery, jobs=[public(job) for job in bridge.store.get_many(job_ids)])
