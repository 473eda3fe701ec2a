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
from bridge.queueing import Enqueuer
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
    api_token: str | None


def current() -> Bridge:
    return current_app.extensions["syncbridge"]


def create_app(config: Config | None = None, redis: Redis | None = None) -> Flask:
    """Build the web app; without arguments it reads ``SYNCBRIDGE_CONFIG`` and ``REDIS_URL``."""
    from bridge.views import dashboard, health, hooks, jobs, metrics

    config = config or config_module.load()
    redis = redis or connect()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("SYNCBRIDGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY))
    app.json.sort_keys = False
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    token = os.environ.get("SYNCBRIDGE_API_TOKEN") or None
    if token is None:
        log.warning("SYNCBRIDGE_API_TOKEN is not set: /jobs, /deliveries and the dashboard are open to anyone")
    app.extensions["syncbridge"] = Bridge(config, redis, Store(redis, config.retention),
                                          Enqueuer(redis, config.retention), token)
    for blueprint in (hooks.bp, jobs.bp, health.bp, dashboard.bp, metrics.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError):  # never a 2xx for work that was not stored
        log.error("redis unavailable: %s", type(exc).__name__)
        response = jsonify(error="the job store (Redis) is unavailable; nothing was stored, retry later")
        response.headers["Retry-After"] = "5"
        return response, 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.response is not None:
            return exc.response
        return jsonify(error=exc.description), exc.code

    return app
