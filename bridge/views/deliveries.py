"""Deliveries: ``/deliveries`` (what reached ``/hooks/<source>``, refused ones too) and
``/deliveries/<id>`` (one delivery's jobs, and how each request carrying its id was answered).

Both answer JSON, or a page to a browser (``bridge.views.pages``). What is kept, and for how
long, is ``bridge.deliveries``'s.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, jsonify

from bridge.app import current
from bridge.store import public
from bridge.views import params
from bridge.views.pages import page, wants_html

bp = Blueprint("deliveries", __name__)
PAGE_SIZE = 100
MAX_LIMIT = 500
UNKNOWN = "(unknown)"  # the ?source= that lists requests to sources the config does not have
VERDICTS = ("accepted", "refused")
STATUS_CODE = re.compile(r"[1-5][0-9][0-9]")
ENTRY_ID = re.compile(r"[0-9]+(-[0-9]+)?")


@bp.get("/deliveries")
def index():
    """The newest deliveries first: ``?source=`` (or ``(unknown)``), ``?status=accepted|refused|<code>``,
    ``?before=<entry id>`` for the page after, ``?limit=``."""
    bridge = current()
    source = params.one("source")
    if source is not None and source != UNKNOWN and source not in bridge.config.sources:
        abort(400, description=f"no source {source!r} in the config (sources: {', '.join(bridge.config.sources)})")
    status = params.one("status")
    if status is not None and status not in VERDICTS and not STATUS_CODE.fullmatch(status):
        abort(400, description="status must be accepted, refused or an HTTP status code")
    before = params.one("before")
    if before is not None and not ENTRY_ID.fullmatch(before):
        abort(400, description="before must be an entry id (as in a listed delivery's `id`)")
    limit = min(max(params.whole_number("limit", PAGE_SIZE), 1), MAX_LIMIT)
    sources: list[str | None] = [None if source == UNKNOWN else source] if source else [*bridge.config.sources, None]

    def read() -> dict[str, Any]:
        entries, more = bridge.deliveries.recent(bridge.redis, sources, limit=limit, before=before, status=status)
        return {"entries": entries, "more": more}

    if wants_html():
        return page("deliveries.html", lambda: {
            **read(), "sources": list(bridge.config.sources), "unknown": UNKNOWN, "verdicts": VERDICTS,
            "filters": {name: value for name, value in (("source", source), ("status", status)) if value}})
    found = read()
    return jsonify(deliveries=[_shown(entry) for entry in found["entries"]], more=found["more"])


@bp.get("/deliveries/<delivery>")
def show(delivery: str):
    """The jobs of a delivery id: of the source named by ``?source=``, else of every configured source;
    and ``received``: each request that carried this id, as it was answered.

    Delivery ids are unique per host only, so one id may have reached several sources; without
    ``?source=`` their jobs are listed together (each job names its source).
    """
    bridge = current()
    source = params.one("source")
    sources = [source] if source is not None else list(bridge.config.sources)
    html = wants_html()

    def read() -> dict[str, Any]:
        found = bridge.store.deliveries(delivery, sources)
        received = bridge.deliveries.find(bridge.redis, sources, delivery)
        if not found and not received:
            where = f" from source {source!r}" if source is not None else ""
            abort(404, description=f"no delivery {delivery!r}{where} (unknown, or expired)")
        job_ids = [job_id for ids in found.values() for job_id in ids]
        return {"delivery": delivery, "jobs": [public(job) for job in bridge.store.get_many(job_ids)],
                "received": received}

    if html:
        return page("delivery.html", read)
    found = read()
    return jsonify(found | {"received": [_shown(entry) for entry in found["received"]]})


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as the JSON shows it: the log's fields, in a fixed order."""
    return {name: entry.get(name) for name in ("id", "at", "source", "event", "delivery", "agent", "signed",
                                                "status", "verdict", "reason", "repo", "ref", "after", "jobs")}
