"""Liveness and readiness, open to anyone: ``/healthz`` never touches Redis, ``/readyz`` always does."""

from __future__ import annotations

from flask import Blueprint, jsonify
from redis.exceptions import RedisError

from bridge.app import current
from bridge.connection import problem
from bridge.views.auth import public

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz():
    try:
        current().redis.ping()
    except RedisError as exc:
        return jsonify(status="unavailable", redis=type(exc).__name__, reason=problem(exc)), 503
    return jsonify(status="ok")
