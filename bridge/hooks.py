"""What a delivery to ``/hooks/<source>`` means, apart from how its bytes arrive and are stored.

Both servers of the hook route share it: the public edge (:mod:`bridge.receiver`, on an event
loop, storing through the group commit) and the Flask view (:mod:`bridge.views.hooks`, for WSGI
servers and the test client, storing one delivery per call). :meth:`Hooks.check` turns the raw
bytes into an answer that needs no Redis (401, 400, 415, ping, ignored) or the script arguments
of a delivery to store; :meth:`Hooks.answer` turns the stored delivery's receipt into the 202 or
the 200 of a redelivery. Neither does I/O, so each server owns its own waiting.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import Config
from bridge.events import BadPayload, Ignored, Ping, Unauthorized, UnsupportedMediaType
from bridge.queueing import Delivery, Enqueuer, Receipt
from bridge.routing import Match, route_push
from bridge.sources import SOURCES

log = logging.getLogger("syncbridge.hooks")
PREFIX = "/hooks/"
WARN_EVERY = 10.0  # seconds: a source's rejections are logged as a warning at most this often
REDIS_DOWN = "the job store (Redis) is unavailable; nothing was stored, retry later"


@dataclass(frozen=True, slots=True)
class Answer:
    """A status, a JSON body and any extra headers; ``outcome`` labels a delivery answered without
    touching the queue (401, 400, ping...) for the ``webhooks_received`` metric, which each server
    counts its own way (stored deliveries are counted by the enqueue script)."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    outcome: str | None = None


REDIS_DOWN_ANSWER = Answer(503, {"error": REDIS_DOWN}, (("Retry-After", "5"),))


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified push that matched routes: what to store, and what the answer will say."""

    source: str
    repo: str
    delivery: Delivery
    targets: tuple[str, ...]
    matches: list[Match]  # per target, the ref that chose it (what the delivery log shows)


class Hooks:
    """Verify, parse and route deliveries for one config."""

    def __init__(self, config: Config, enqueuer: Enqueuer):
        self.config = config
        self.enqueuer = enqueuer
        self.secrets = {name: source.secret_list() for name, source in config.sources.items()}
        self._warned: dict[str, float] = {}  # source -> when its last rejection was logged as a warning

    def check(self, source: str, headers: Mapping[str, str], body: bytes) -> Answer | Accepted:
        """Everything but the store: an answer now, or the delivery to store."""
        settings = self.config.sources.get(source)
        if settings is None:
            return Answer(404, {"error": f"unknown source {source!r}"})
        host = SOURCES[settings.kind]
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):  # hosts sign the bytes they send; none compresses them
            return Answer(415, {"error": f"Content-Encoding {encoding} is not accepted: send the body as is"},
                          outcome="unsupported_media_type")
        try:
            host.verify(headers, body, self.secrets[source])
        except Unauthorized as exc:
            log.log(self._rejection_level(source), "source=%s rejected: %s", source, exc, extra={"source": source})
            return Answer(401, {"error": str(exc)}, outcome="unauthorized")
        try:
            event = host.parse(headers, body)
        except UnsupportedMediaType as exc:
            return Answer(415, {"error": str(exc)}, outcome="unsupported_media_type")
        except BadPayload as exc:
            return Answer(400, {"error": str(exc)}, outcome="bad_payload")
        if isinstance(event, Ping):
            return Answer(200, {"ping": "ok", "source": source}, outcome="ping")
        if isinstance(event, Ignored):
            return Answer(200, {"ignored": event.reason}, outcome="ignored")
        matches = route_push(self.config, source, event)
        if not matches:
            refs = ", ".join(update.ref for update in event.updates)
            return Answer(200, {"ignored": f"no route for {event.repo} {refs}"}, outcome="unrouted")
        delivery = event.delivery or "sha256-" + hashlib.sha256(body).hexdigest()
        prepared = self.enqueuer.prepare(source, event.repo, delivery, matches, self.config.targets)
        return Accepted(source, event.repo, prepared, tuple(match.target for match in matches), matches)

    def _rejection_level(self, source: str) -> int:
        """WARNING for the first rejection of a source in ``WARN_EVERY`` seconds, DEBUG for the rest.

        Anyone can send forged deliveries as fast as they like; the operator needs to hear that
        a source is being rejected (a wrong secret), not one line per request. Every rejection
        is still counted in /metrics (``webhooks_received{outcome="unauthorized"}``).
        """
        now = time.monotonic()
        if now - self._warned.get(source, -WARN_EVERY) < WARN_EVERY:
            return logging.DEBUG
        self._warned[source] = now
        return logging.WARNING

    def answer(self, accepted: Accepted, receipt: Receipt, job_url_root: str) -> Answer:
        """The 202 for a stored delivery, or the 200 of one seen before (its jobs as they are now)."""
        delivery, source = receipt.delivery, accepted.source
        extra = {"delivery": delivery, "source": source}
        if receipt.seen_before:
            jobs = [_summary(job_url_root, job_id, target, status) for job_id, target, status in receipt.seen]
            # A host retrying in a loop must not flood the log: one debug line each.
            log.debug("delivery=%s seen before: jobs=%s", delivery, ",".join(receipt.job_ids), extra=extra)
            return Answer(200, {"delivery": delivery, "jobs": jobs})
        jobs = [_summary(job_url_root, job_id, target, "queued")
                for job_id, target in zip(receipt.job_ids, accepted.targets, strict=True)]
        # A line per job queued; a push that only joined waiting jobs (a burst) is a debug line, so log
        # volume follows the work queued, as the syncs do. Every delivery is in /deliveries and /metrics.
        log.log(logging.INFO if receipt.created else logging.DEBUG, "delivery=%s source=%s repo=%s jobs=%s%s",
                delivery, source, accepted.repo, ",".join(receipt.job_ids), "" if receipt.created else " (joined)",
                extra=extra)
        return Answer(202, {"delivery": delivery, "jobs": jobs})


def _summary(root: str, job_id: str, target: str, status: str) -> dict[str, str]:
    return {"id": job_id, "target": target, "status": status, "url": root + job_id}
