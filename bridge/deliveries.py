"""Deliveries as the bridge saw them: every POST to ``/hooks/<source>``, accepted or refused.

A host's own page of recent deliveries shows its side; this is ours. An operator whose secret
is wrong sees "received, signature did not match" here instead of nothing: each entry keeps the
event, the delivery id, the user agent, whether a signature or token was present (never its
value), the answer (202, 200, 401, 400, 413, 415...) and why, and the jobs the delivery created,
joined or (a redelivery) named again.

Kept in Redis, one stream per configured source (``XADD ... MAXLEN ~ KEPT``, trimmed to the
config's ``retention`` too, and expiring after it); requests to an unknown source share one
stream, so a scanner inventing names cannot make keys. The edge never waits for this:
:meth:`DeliveryLog.add` appends a tuple to a bounded in-process buffer (what does not fit is
dropped and counted), and the receiver flushes it once a second in one pipeline
(:meth:`DeliveryLog.write`). The headers object is kept as it came, and read only then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from redis import Redis
from redis.client import Pipeline

from bridge import redact
from bridge.config import Config
from bridge.events import HeaderNames
from bridge.hooks import Accepted, Answer
from bridge.queueing import Receipt
from bridge.sources import SOURCES
from bridge.store import PREFIX, iso, job_deliveries_key

KEPT = 1000  # entries per source's stream (approximately: Redis trims whole nodes)
JOB_DELIVERIES_KEPT = 50  # per job: a job that absorbed a burst keeps the newest of its pushes
BUFFER = 10_000  # entries one web process holds between flushes; beyond it they are dropped and counted
MAX_ID_PART = 2**64 - 1  # each part of a stream entry id
FIELD_MAX = 200  # characters kept of what a sender chose (user agent, delivery id, a source name)
UNKNOWN_SOURCE_KEY = f"{PREFIX}:deliveries-unknown-source"
# Seen: when, the source asked for, the request's headers, the answer, and for a stored delivery what
# was stored and the script's receipt.
Seen = tuple[float, str, Mapping[str, str], Answer, Accepted | None, Receipt | None]

VERDICTS = {
    202: "accepted",
    400: "refused: not a push this host sends",
    404: "unknown source: no `sources:` entry has this name",
    408: "the body did not arrive in time",
    413: "refused: the body is over the size limit",
    415: "refused: a content type or encoding this host never sends",
    500: "internal error: nothing was stored",
    503: "not stored: the bridge could not take it (Redis down, or busy); the host should retry",
}


def stream_key(source: str | None) -> str:
    """The stream of a configured source's deliveries; None: requests to sources that do not exist."""
    return UNKNOWN_SOURCE_KEY if source is None else f"{PREFIX}:deliveries:{source}"


class DeliveryLog:
    """The delivery log of one config: the web process's buffer, and reading the log back."""

    def __init__(self, config: Config, buffer: int = BUFFER):
        self.retention = int(config.retention)
        self.headers = {name: SOURCES[source.kind].HEADERS for name, source in config.sources.items()}
        self.limit = buffer
        self.pending: list[Seen] = []
        self.dropped = 0

    def add(self, source: str, headers: Mapping[str, str], answer: Answer, accepted: Accepted | None = None,
            receipt: Receipt | None = None) -> Answer:
        """Note one request for the next flush (a tuple appended: the edge's request path pays no more)."""
        if len(self.pending) < self.limit:
            self.pending.append((time.time(), source, headers, answer, accepted, receipt))
        else:
            self.dropped += 1
        return answer

    def take(self) -> tuple[list[Seen], int]:
        """What was noted since the last take, and how many did not fit."""
        taken, dropped = self.pending, self.dropped
        self.pending, self.dropped = [], 0
        return taken, dropped

    def write(self, pipe: Redis | Pipeline, seen: Iterable[Seen]) -> None:
        """Queue the commands that store ``seen`` on ``pipe``: one XADD each, then trim and expiry per stream."""
        streams = set()
        for entry in seen:
            known = entry[1] in self.headers
            key = stream_key(entry[1] if known else None)
            pipe.xadd(key, self._fields(entry), maxlen=KEPT, approximate=True)
            streams.add(key)
            for job_id, fed in _fed(entry):
                pipe.rpush(job_deliveries_key(job_id), fed)
                pipe.ltrim(job_deliveries_key(job_id), -JOB_DELIVERIES_KEPT, -1)
                pipe.expire(job_deliveries_key(job_id), self.retention)
        oldest = f"{int((time.time() - self.retention) * 1000)}-0"
        for key in streams:
            pipe.xtrim(key, minid=oldest, approximate=True)
            pipe.expire(key, self.retention)

    def _fields(self, entry: Seen) -> dict[str, str]:
        """One stream entry: strings only, scrubbed, what a sender chose cut to ``FIELD_MAX``."""
        at, source, headers, answer, accepted, receipt = entry
        names = self.headers.get(source)
        tried = [names] if names is not None else list(dict.fromkeys(module.HEADERS for module in SOURCES.values()))
        event = next((value for n in tried if (value := headers.get(n.event))), "")
        delivery = receipt.delivery if receipt is not None else _first(headers, tried)
        signed = any(headers.get(name) for n in tried for name in n.signature)
        body = answer.body
        fields = {
            "at": iso(at), "source": source, "event": event, "delivery": delivery or "",
            "agent": headers.get("User-Agent") or "", "signed": "1" if signed else "0",
            "status": str(answer.status), "outcome": _outcome(answer, receipt),
            "reason": str(body.get("error") or body.get("ignored") or ""),
        }
        if accepted is not None:
            updates = [match.update for match in accepted.matches if match.update is not None]
            fields.update(repo=accepted.repo, ref=", ".join(dict.fromkeys(u.ref for u in updates)),
                          after=", ".join(dict.fromkeys(u.after for u in updates)))
        if receipt is not None:
            fields["jobs"] = json.dumps(_jobs(accepted, receipt), separators=(",", ":"))
        return {name: redact.scrub(value)[:FIELD_MAX] if name in _SENDERS else redact.scrub(value)
                for name, value in fields.items()}

    def recent(self, redis: Redis, sources: Iterable[str | None], *, limit: int = 100,
               before: str | None = None, status: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """The newest entries of ``sources`` (None: unknown sources) merged, newest first, and whether
        there are older ones. ``before``: only entries older than that entry id (the next page);
        ``status``: ``accepted`` (2xx), ``refused`` (any other) or one status code."""
        keys = [stream_key(source) for source in sources]
        found: list[dict[str, Any]] = []
        end = _older_than(before) if before else "+"
        while end is not None:
            pipe = redis.pipeline(transaction=False)
            for key in keys:
                pipe.xrevrange(key, end, "-", count=limit + 1)
            batch = sorted((entry for key, entries in zip(keys, pipe.execute(), strict=True)
                            for entry in _decode(key, entries)), key=_order, reverse=True)[:limit + 1]
            found += [entry for entry in batch if _wanted(entry, status)]
            if len(found) > limit or len(batch) <= limit:
                return found[:limit], len(found) > limit or len(batch) > limit
            end = f"({batch[-1]['id']}"
        return [], False

    def find(self, redis: Redis, sources: Iterable[str], delivery: str) -> list[dict[str, Any]]:
        """Every entry of ``sources`` whose delivery id is ``delivery``, newest first (a redelivery
        makes a second one)."""
        keys = [stream_key(source) for source in sources]
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.xrevrange(key, "+", "-")
        entries = [entry for key, found in zip(keys, pipe.execute(), strict=True) for entry in _decode(key, found)
                   if entry["delivery"] == delivery]
        return sorted(entries, key=_order, reverse=True)


_SENDERS = frozenset({"source", "event", "delivery", "agent"})


def verdict(entry: Mapping[str, Any]) -> str:
    """The answer in words, as an operator asks it: was it received, and what became of it."""
    status, outcome = int(entry["status"]), entry.get("outcome")
    if status == 401:
        return ("received, signature did not match" if entry.get("signed")
                else "received without a signature or token")
    if status == 200:
        return {"duplicate": "a redelivery: the same jobs again, nothing new queued", "ping": "a ping, answered",
                }.get(outcome or "", "ignored")
    if status == 202:
        jobs = entry.get("jobs") or []
        created = sum(1 for job in jobs if job.get("how") == "created")
        joined = len(jobs) - created
        queued = f"accepted: {created} job{'s' * (created != 1)} queued"
        return queued + (f", {joined} waiting joined" if joined else "")
    return VERDICTS.get(status, f"answered {status}")


def _older_than(entry_id: str) -> str | None:
    """XREVRANGE's exclusive end for entries older than ``entry_id`` (digits, or digits-digits), None
    when nothing can be; an id past the largest Redis allows means no bound at all."""
    milliseconds, _, sequence = entry_id.partition("-")
    ms, seq = int(milliseconds), int(sequence or 0)
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        return "+" if ms >= MAX_ID_PART else f"({ms}-{MAX_ID_PART}"
    return None if ms == seq == 0 else f"({ms}-{seq}"


def _first(headers: Mapping[str, str], tried: list[HeaderNames]) -> str:
    return next((value for names in tried for name in names.delivery if (value := headers.get(name))), "")


def _outcome(answer: Answer, receipt: Receipt | None) -> str:
    if answer.outcome is not None:
        return answer.outcome
    if receipt is not None:
        return "duplicate" if receipt.seen_before else "accepted"
    return ""


def _jobs(accepted: Accepted | None, receipt: Receipt) -> list[dict[str, str]]:
    """The jobs a stored delivery created, joined, or (seen before) named again."""
    if receipt.seen_before:
        return [{"id": job_id, "target": target, "how": "redelivered"} for job_id, target, _ in receipt.seen]
    assert accepted is not None
    prepared = [job_id for _, (_, job_id, *_rest) in accepted.delivery.targets]
    return [{"id": job_id, "target": target, "how": "created" if job_id == mine else "joined"}
            for job_id, target, mine in zip(receipt.job_ids, accepted.targets, prepared, strict=True)]


def _fed(entry: Seen) -> list[tuple[str, str]]:
    """Per job a new delivery created or joined, what its page shows of that delivery (JSON)."""
    at, source, _, _, accepted, receipt = entry
    if accepted is None or receipt is None or receipt.seen_before:
        return []
    fed = []
    for job_id, match in zip(receipt.job_ids, accepted.matches, strict=True):
        update = match.update
        fed.append((job_id, json.dumps(redact.scrub({
            "at": iso(at), "source": source, "delivery": receipt.delivery, "repo": accepted.repo,
            "ref": update.ref if update else "", "before": update.before if update else "",
            "after": update.after if update else ""}), separators=(",", ":"))))
    return fed


def _decode(key: bytes | str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    decoded = []
    for entry_id, raw in entries:
        entry: dict[str, Any] = {name.decode(): value.decode() for name, value in raw.items()}
        entry["id"] = entry_id.decode()
        entry["signed"] = entry.get("signed") == "1"
        entry["status"] = int(entry["status"])
        entry["jobs"] = json.loads(entry["jobs"]) if entry.get("jobs") else []
        entry["known_source"] = key != UNKNOWN_SOURCE_KEY
        entry["verdict"] = verdict(entry)
        decoded.append(entry)
    return decoded


def _order(entry: dict[str, Any]) -> tuple[int, int]:
    milliseconds, _, sequence = entry["id"].partition("-")
    return int(milliseconds), int(sequence or 0)


def _wanted(entry: dict[str, Any], status: str | None) -> bool:
    if status is None:
        return True
    if status == "accepted":
        return 200 <= entry["status"] < 300
    if status == "refused":
        return not 200 <= entry["status"] < 300
    return str(entry["status"]) == status
