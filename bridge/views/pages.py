"""What every page for people shares: HTML or JSON for the same route, times in words, the
Redis-down page, and the template helpers.

A route that has both (``/jobs/<id>``, ``/deliveries``, ``/deliveries/<id>``) answers HTML to a
browser (its ``Accept`` prefers ``text/html``) and JSON to everyone else (curl, scripts, the CLI
send ``*/*`` or ask for JSON); ``?format=html`` or ``?format=json`` decides outright, so a page
can link to its own JSON. Pages are rendered on the server, readable without JavaScript;
``static/console.js`` only refreshes them and sends the Retry button's request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request
from markupsafe import Markup, escape
from redis.exceptions import RedisError

from bridge.connection import problem
from bridge.store import epoch
from bridge.views import params
from bridge.views.auth import public

bp = Blueprint("pages", __name__)
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def wants_html() -> bool:
    """Whether to answer this request with the page rather than the JSON."""
    chosen = params.one("format")
    if chosen is not None and chosen not in ("html", "json"):
        abort(400, description="format must be html or json")
    if chosen is not None:
        return chosen == "html"
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def page(template: str, context: Callable[[], dict[str, Any]]) -> str | tuple[str, int, dict[str, str]]:
    """A page with what ``context()`` reads, or while Redis is down one that says why (503, and the
    browser looks again)."""
    try:
        return render_template(template, **context())
    except RedisError as exc:
        return unavailable(render_template("unavailable.html", reason=problem(exc)))


def unavailable(body: Any) -> tuple[Any, int, dict[str, str]]:
    return body, 503, {"Retry-After": "5"}


def ago(stamp: str | None, now: float | None = None) -> str:
    """``stamp`` (ISO 8601) relative to now, in the largest unit: "12 s ago", "3 min ago", "in 2 h"."""
    if not stamp:
        return ""
    seconds = (time.time() if now is None else now) - epoch(stamp)
    if abs(seconds) < 1:
        return "just now"
    size, unit = next((size, unit) for size, unit in UNITS if abs(seconds) >= size)
    amount = f"{int(abs(seconds) // size)} {unit}"
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


def seconds(value: float | None) -> str:
    """A duration in words: "0.4 s", "12.0 s", "3 min 5 s"."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def duration(job: dict[str, Any]) -> str:
    """How long a job ran (or has been running), from its start."""
    if not job.get("started_at"):
        return ""
    end = epoch(job["finished_at"]) if job.get("finished_at") else time.time()
    return seconds(max(0.0, end - epoch(job["started_at"])))


@bp.app_template_global()
def when(stamp: str | None) -> Markup:
    """A time for people: relative, with the absolute one on hover (and for machines)."""
    if not stamp:
        return Markup('<span class="muted">never</span>')
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(escape(stamp), ago(stamp))


@bp.app_context_processor
def helpers() -> dict[str, Any]:
    return {"duration": duration, "seconds": seconds}


@bp.get("/favicon.ico")
@public  # browsers ask for it on every page, token or not: public code, no data
def favicon() -> Response:
    return current_app.send_static_file("favicon.svg")
