"""``GET /``: a page for people. Server-rendered, then refreshed every 2 s by ``static/dashboard.js``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request
from redis.exceptions import RedisError

from bridge.app import current
from bridge.config import JOB_STATES
from bridge.connection import problem
from bridge.store import NEXT_RECONCILE_KEY, public

bp = Blueprint("dashboard", __name__)


def state() -> dict[str, Any]:
    """Recent jobs (filtered like /jobs) and each target's last success."""
    bridge = current()
    status = request.args.get("status") or None
    jobs = bridge.store.recent(status=status if status in JOB_STATES else None,
                               target=request.args.get("target") or None,
                               repo=request.args.get("repo") or None, limit=100)
    successes = bridge.store.last_successes()
    reconciles = bridge.store.schedules(NEXT_RECONCILE_KEY)
    targets = [{"name": name, "provider": target.provider, "last_success": successes.get(name),
                "next_reconcile": _iso(reconciles.get(name)) if target.reconcile_every else None}
               for name, target in bridge.config.targets.items()]
    sweeps = [{**report, "at": _iso(report["at"])} for report in bridge.store.sweeps().values()]
    return {"jobs": [public(job) for job in jobs], "targets": targets, "sweeps": sweeps}


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if epoch else None


@bp.get("/")
def index():
    try:
        return render_template("dashboard.html", states=JOB_STATES, **state())
    except RedisError as exc:  # a page for people: say what is wrong in words, and look again soon
        return _unavailable(render_template("unavailable.html", reason=problem(exc)))


@bp.get("/dashboard.json")
def data():
    try:
        return jsonify(state())
    except RedisError as exc:  # the page's script shows this error in place of "updated"
        return _unavailable(jsonify(error=problem(exc)))


def _unavailable(body: str | Response) -> tuple[str | Response, int, dict[str, str]]:
    return body, 503, {"Retry-After": "5"}
