"""``GET /metrics``: Prometheus text, from the Redis-kept counters (see ``bridge.metrics``).

Guarded like the status routes; ``SYNCBRIDGE_METRICS_TOKEN`` also opens it (a scrape job's token).
"""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from bridge.app import current
from bridge.metrics import RedisCollector
from bridge.queueing import NOTIFY_QUEUE_NAME, QUEUE_NAME
from bridge.views import auth

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@auth.metrics
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(current().redis, (QUEUE_NAME, NOTIFY_QUEUE_NAME)))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
