"""``GET /``: the dashboard, a page for people. Server-rendered; ``static/console.js`` refreshes it
every 2 s from the same URL, so the filters (in the URL) survive a refresh and a reload.

Filters match any part of a target's or repository's name, in any case; 100 jobs a page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from redis.exceptions import RedisError

from bridge.app import current
from bridge.config import JOB_STATES
from bridge.connection import problem
from bridge.store import NEXT_RECONCILE_KEY, iso, public
from bridge.views import params
from bridge.views.pages import page, unavailable

bp = Blueprint("dashboard", __name__)
PAGE_SIZE = 100


def filters() -> dict[str, str]:
    """The filters this request asks for, as they appear in its URL (empty ones left out)."""
    chosen = {"status": params.status() or "", "target": (params.one("target") or "").strip(),
              "repo": (params.one("repo") or "").strip()}
    return {name: value for name, value in chosen.items() if value}


def state() -> dict[str, Any]:
    """A page of recent jobs (filtered), each target's card, and the last sweeps."""
    bridge = current()
    chosen, number = filters(), params.whole_number("page", 1, minimum=1)
    jobs, more = bridge.store.page(status=chosen.get("status"), target=chosen.get("target"),
                                   repo=chosen.get("repo"), limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE,
                                   contains=True)
    sweeps = [{**report, "at": iso(report["at"], "seconds")} for report in bridge.store.sweeps().values()]
    return {"jobs": [public(job) for job in jobs], "targets": targets(), "sweeps": sweeps,
            "filters": chosen, "page": number, "more": more}


def targets() -> list[dict[str, Any]]:
    """Per target: its last success, its last failure and why, what it does now, its next reconcile.

    ``failing`` when its newest ended sync failed: a green "last success" must not hide that.
    """
    bridge = current()
    successes, failures = bridge.store.last_successes(), bridge.store.last_failures()
    activity, reconciles = bridge.store.activity(), bridge.store.schedules(NEXT_RECONCILE_KEY)
    cards = []
    for name, target in bridge.config.targets.items():
        success, failure = successes.get(name), failures.get(name)
        now = activity.get(name, {})
        cards.append({
            "name": name, "provider": target.provider, "last_success": success, "last_failure": failure,
            "failing": failure is not None and (success is None or failure["at"] > success["at"]),
            "state": "running" if now.get("running") else "queued" if now.get("queued") else
                     "stalled" if now.get("stalled") else "idle",
            "queued": now.get("queued", 0),
            "next_reconcile": iso(reconciles[name], "seconds") if target.reconcile_every and name in reconciles
            else None,
        })
    return cards


@bp.get("/")
def index():
    return page("dashboard.html", lambda: {"states": JOB_STATES, **state()})


@bp.get("/dashboard.json")
def data():
    try:
        return jsonify(state())
    except RedisError as exc:  # the page's script shows this error in place of "updated"
        return unavailable(jsonify(error=problem(exc)))
