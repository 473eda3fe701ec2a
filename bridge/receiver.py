"""``POST /hooks/<source>``: verify the raw bytes, parse, route, enqueue, answer.

The one route a Git host calls, and the one that must be fast, so it is a bare WSGI app in
front of Flask rather than a Flask view: Flask's request context, routing and response objects
cost more CPU than everything below together (see docs/BENCHMARKS.md). Every other path goes on
to the Flask app. Deliveries are stored through :class:`bridge.group_commit.GroupCommit`, so
the requests a process serves at once share one Redis round trip.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_host, get_input_stream

from bridge import metrics
from bridge.events import BadPayload, Ignored, Ping, Unauthorized, UnsupportedMediaType
from bridge.routing import route_push
from bridge.sources import SOURCES

if TYPE_CHECKING:
    from bridge.app import Bridge

log = logging.getLogger("syncbridge.hooks")
PREFIX = "/hooks/"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REDIS_DOWN = "the job store (Redis) is unavailable; nothing was stored, retry later"


@dataclass(frozen=True, slots=True)
class Answer:
    """A status, a JSON body and any extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class Receiver:
    """The WSGI app for ``/hooks/<source>``; ``fallback`` (Flask) serves every other path."""

    def __init__(self, bridge: Bridge, fallback: WSGIApp, max_body: int):
        self.bridge = bridge
        self.fallback = fallback
        self.max_body = max_body
        self.secrets = {name: source.secret_list() for name, source in bridge.config.sources.items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX):] or path == PREFIX:
            return self.fallback(environ, start_response)
        try:
            if environ["REQUEST_METHOD"] == "POST":
                answer = self.receive(path[len(PREFIX):], environ)
            else:
                answer = Answer(405, {"error": "webhooks are POSTed"}, (("Allow", "POST"),))
        except RedisError as exc:  # never a 2xx for work that was not stored
            log.error("redis unavailable: %s", type(exc).__name__)
            answer = Answer(503, {"error": REDIS_DOWN}, (("Retry-After", "5"),))
        except Exception:
            log.exception("delivery to %s failed", path)
            answer = Answer(500, {"error": "internal error; nothing was stored"})
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *answer.headers])
        return [body]

    def receive(self, source: str, environ: dict[str, Any]) -> Answer:
        bridge = self.bridge
        settings = bridge.config.sources.get(source)
        if settings is None:
            return Answer(404, {"error": f"unknown source {source!r}"})
        host = SOURCES[settings.kind]
        headers = EnvironHeaders(environ)
        body = self._body(environ)
        if body is None:
            return Answer(413, {"error": f"the body is over {self.max_body} bytes"}, (("Connection", "close"),))
        try:
            host.verify(headers, body, self.secrets[source])
        except Unauthorized as exc:
            log.warning("source=%s rejected: %s", source, exc, extra={"source": source})
            return self._not_queued(source, "unauthorized", {"error": str(exc)}, 401)
        try:
            event = host.parse(headers, body)
        except UnsupportedMediaType as exc:
            return self._not_queued(source, "unsupported_media_type", {"error": str(exc)}, 415)
        except BadPayload as exc:
            return self._not_queued(source, "bad_payload", {"error": str(exc)}, 400)
        if isinstance(event, Ping):
            return self._not_queued(source, "ping", {"ping": "ok", "source": source}, 200)
        if isinstance(event, Ignored):
            return self._not_queued(source, "ignored", {"ignored": event.reason}, 200)
        matches = route_push(bridge.config, source, event)
        if not matches:
            refs = ", ".join(update.ref for update in event.updates)
            return self._not_queued(source, "unrouted", {"ignored": f"no route for {event.repo} {refs}"}, 200)
        delivery = event.delivery or "sha256-" + hashlib.sha256(body).hexdigest()
        receipt = bridge.commits.submit(
            bridge.enqueuer.prepare(source, event.repo, delivery, matches, bridge.config.targets))
        root = _job_url_root(environ)
        if receipt.seen_before:
            jobs = [_summary(root, job["id"], job["target"], job["status"])
                    for job in bridge.store.get_many(receipt.job_ids)]
            log.info("delivery=%s seen before: jobs=%s", delivery, ",".join(receipt.job_ids),
                     extra={"delivery": delivery, "source": source})
            return Answer(200, {"delivery": delivery, "jobs": jobs})
        jobs = [_summary(root, job_id, match.target, "queued")
                for job_id, match in zip(receipt.job_ids, matches, strict=True)]
        # A line per job queued; a push that only joined waiting jobs (a burst) is a debug line, so log
        # volume follows the work queued, as the syncs do. Every delivery is in /deliveries and /metrics.
        log.log(logging.INFO if receipt.created else logging.DEBUG, "delivery=%s source=%s repo=%s jobs=%s%s",
                delivery, source, event.repo, ",".join(receipt.job_ids), "" if receipt.created else " (joined)",
                extra={"delivery": delivery, "source": source})
        return Answer(202, {"delivery": delivery, "jobs": jobs})

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The raw bytes, or None when they are over the limit (refused before reading them).

        With a Content-Length (what every host sends) it is one read; chunked bodies go through
        werkzeug's limited stream, which counts as it reads.
        """
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit():
            if int(length) > self.max_body:
                return None
            return environ["wsgi.input"].read(int(length))
        try:
            return get_input_stream(environ, max_content_length=self.max_body).read()
        except RequestEntityTooLarge:
            return None

    def _not_queued(self, source: str, outcome: str, body: dict[str, str], status: int) -> Answer:
        """Answer without touching the queue; the count is best effort (accepted ones count in the script)."""
        metrics.count_best_effort(self.bridge.redis, "webhooks_received", source=source, outcome=outcome)
        return Answer(status, body)


def _job_url_root(environ: dict[str, Any]) -> str:
    """Where ``/jobs/<id>`` lives as the client sees it (``ProxyFix`` has applied X-Forwarded-*)."""
    host = environ.get("HTTP_HOST") or get_host(environ)
    return f"{environ['wsgi.url_scheme']}://{host}{environ.get('SCRIPT_NAME', '')}/jobs/"


def _summary(root: str, job_id: str, target: str, status: str) -> dict[str, str]:
    return {"id": job_id, "target": target, "status": status, "url": root + job_id}
