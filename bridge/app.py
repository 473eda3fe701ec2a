"""The Flask app factory: config, Redis and the blueprints, nothing at import time."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from flask import Flask, current_app, jsonify
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge import config as config_module
from bridge import redact
from bridge.config import Config
from bridge.connection import connect
from bridge.deliveries import DeliveryLog
from bridge.hooks import REDIS_DOWN, Hooks
from bridge.limits import Limits
from bridge.queueing import Enqueuer
from bridge.store import Store

log = logging.getLogger("syncbridge.web")


@dataclass
class Bridge:
    """What every view needs, built once per process."""

    config: Config
    redis: Redis
    store: Store
    enqueuer: Enqueuer
    hooks: Hooks
    api_token: str | None  # None: protected mode (bridge.views.auth)
    metrics_token: str | None  # opens /metrics alone
    deliveries: DeliveryLog


def current() -> Bridge:
    return current_app.extensions["syncbridge"]


def create_app(config: Config | None = None, redis: Redis | None = None) -> Flask:
    """Build the web app; without arguments it reads ``SYNCBRIDGE_CONFIG`` and ``REDIS_URL``.

    Behind ProxyFix, so job URLs use the host and scheme the client used. ``syncbridge web``
    serves it behind its event-loop edge (:mod:`bridge.receiver`), which answers
    ``/hooks/<source>`` itself; any WSGI server (and the test client) gets that route from
    :mod:`bridge.views.hooks`.
    """
    from bridge.views import auth, dashboard, deliveries, health, hooks, jobs, metrics, openapi, pages

    config = config or config_module.load()
    redis = redis or connect()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = Limits.from_environ().max_body
    app.json.sort_keys = False
    token = os.environ.get("SYNCBRIDGE_API_TOKEN") or None
    if token is None:
        log.warning("SYNCBRIDGE_API_TOKEN is not set: protected mode, the dashboard, /jobs, /deliveries and "
                    "/metrics answer only clients on this machine")
    metrics_token = os.environ.get("SYNCBRIDGE_METRICS_TOKEN") or None
    redact.register(*(secret for secret in (token, metrics_token) if secret))  # never in a log line either
    enqueuer = Enqueuer(redis, config.retention)
    bridge = Bridge(config, redis, Store(redis, config.retention), enqueuer, Hooks(config, enqueuer), token,
                    metrics_token, DeliveryLog(config, redis))
    app.extensions["syncbridge"] = bridge
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    for blueprint in (hooks.bp, jobs.bp, deliveries.bp, health.bp, dashboard.bp, metrics.bp, pages.bp, openapi.bp):
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
        response = jsonify(error=exc.description)
        response.status_code = exc.code or 500
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 says what is allowed
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    return app
