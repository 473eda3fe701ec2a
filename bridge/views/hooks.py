"""``POST /hooks/<source>``: verify the raw bytes, parse, route, enqueue, answer."""

from __future__ import annotations

import hashlib
import logging

from flask import Blueprint, jsonify, request, url_for

from bridge import metrics
from bridge.app import current
from bridge.events import BadPayload, Ignored, Ping, Unauthorized, UnsupportedMediaType
from bridge.routing import route_push
from bridge.sources import SOURCES

bp = Blueprint("hooks", __name__)
log = logging.getLogger("syncbridge.hooks")


@bp.post("/hooks/<source>")
def receive(source: str):
    bridge = current()
    settings = bridge.config.sources.get(source)
    if settings is None:
        return jsonify(error=f"unknown source {source!r}"), 404
    host = SOURCES[settings.kind]
    body = request.get_data(cache=False)  # raw bytes; over MAX_CONTENT_LENGTH is a 413 before reading
    try:
        host.verify(request.headers, body, settings.secret_list())
    except Unauthorized as exc:
        log.warning("source=%s rejected: %s", source, exc, extra={"source": source})
        return _not_queued(source, "unauthorized", {"error": str(exc)}, 401)
    try:
        event = host.parse(request.headers, body)
    except UnsupportedMediaType as exc:
        return _not_queued(source, "unsupported_media_type", {"error": str(exc)}, 415)
    except BadPayload as exc:
        return _not_queued(source, "bad_payload", {"error": str(exc)}, 400)
    if isinstance(event, Ping):
        return _not_queued(source, "ping", {"ping": "ok", "source": source}, 200)
    if isinstance(event, Ignored):
        return _not_queued(source, "ignored", {"ignored": event.reason}, 200)
    matches = route_push(bridge.config, source, event)
    if not matches:
        refs = ", ".join(update.ref for update in event.updates)
        return _not_queued(source, "unrouted", {"ignored": f"no route for {event.repo} {refs}"}, 200)
    delivery = event.delivery or "sha256-" + hashlib.sha256(body).hexdigest()
    receipt = bridge.enqueuer.enqueue(source, event.repo, delivery, matches, bridge.config.targets)
    if receipt.seen_before:
        jobs = [_summary(job["id"], job["target"], job["status"]) for job in bridge.store.get_many(receipt.job_ids)]
        log.info("delivery=%s seen before: jobs=%s", delivery, ",".join(receipt.job_ids),
                 extra={"delivery": delivery, "source": source})
        return jsonify(delivery=delivery, jobs=jobs), 200
    jobs = [_summary(job_id, match.target, "queued") for job_id, match in zip(receipt.job_ids, matches, strict=True)]
    log.info("delivery=%s source=%s repo=%s jobs=%s", delivery, source, event.repo, ",".join(receipt.job_ids),
             extra={"delivery": delivery, "source": source})
    return jsonify(delivery=delivery, jobs=jobs), 202


def _not_queued(source: str, outcome: str, answer: dict[str, str], status: int):
    """Answer without touching the queue; the count is best effort (accepted ones count in the script)."""
    metrics.count_best_effort(current().redis, "webhooks_received", source=source, outcome=outcome)
    return jsonify(answer), status


def _summary(job_id: str, target: str, status: str) -> dict[str, str]:
    return {"id": job_id, "target": target, "status": status,
            "url": url_for("jobs.show", job_id=job_id, _external=True)}
