"""The Flask app factory: config, Redis and the blueprints, nothing at import time."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from flask import Flask, current_app, jsonify
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge import config as config_module
from bridge.config import Config
from bridge.connection import connect
from bridge.group_commit import GroupCommit
from bridge.queueing import Delivery, Enqueuer, Receipt
from bridge.receiver import REDIS_DOWN, Receiver
from bridge.store import Store

log = logging.getLogger("syncbridge.web")
DEFAULT_MAX_BODY = 25 * 1024 * 1024


@dataclass
class Bridge:
    """What every view needs, built once per process."""

    config: Config
    redis: Redis
    store: Store
    enqueuer: Enqueuer
    commits: GroupCommit[Delivery, Receipt]  # the receiver's deliveries, many per Redis round trip
    api_token: str | None  # None: protected mode (bridge.views.auth)
    metrics_token: str | None  # opens /metrics alone


def current() -> Bridge:
    return current_app.extensions["syncbridge"]


def create_app(config: Config | None = None, redis: Redis | None = None) -> Flask:
    """Build the web app; without arguments it reads ``SYNCBRIDGE_CONFIG`` and ``REDIS_URL``.

    ``/hooks/<source>`` is served by :class:`bridge.receiver.Receiver` ahead of Flask, which
    serves the rest; both behind ProxyFix, so job URLs use the host and scheme the client used.
    """
    from bridge.views import auth, dashboard, health, jobs, metrics

    config = config or config_module.load()
    redis = redis or connect()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("SYNCBRIDGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY))
    app.json.sort_keys = False
    token = os.environ.get("SYNCBRIDGE_API_TOKEN") or None
    if token is None:
        log.warning("SYNCBRIDGE_API_TOKEN is not set: protected mode, the dashboard, /jobs, /deliveries and "
                    "/metrics answer only clients on this machine")
    enqueuer = Enqueuer(redis, config.retention)
    bridge = Bridge(config, redis, Store(redis, config.retention), enqueuer, GroupCommit(enqueuer.commit), token,
                    os.environ.get("SYNCBRIDGE_METRICS_TOKEN") or None)
    app.extensions["syncbridge"] = bridge
    receiver = Receiver(bridge, app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.wsgi_app = ProxyFix(receiver, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    for blueprint in (jobs.bp, health.bp, dashboard.bp, metrics.bp):
        app.register_blueprint(blueprint)
    app.before_request(auth.guard)  # every route is guarded unless it is marked public
    app.after_request(auth.secure_headers)

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError):  # never a 2xx for work that was not stored
        log.error("redis unavailable: %s", type(exc).__name__)
        response = jsonify(error=REDIS_DOWN)
        response.headers["Retry-After"] = "5"
        return response, 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.response is not None:
            return exc.response
        return jsonify(error=exc.description), exc.code

    return app
