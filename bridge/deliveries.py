"""Deliveries as the bridge saw them: every POST to ``/hooks/<source>``, accepted or refused.

A host's own page of recent deliveries shows its side; this is ours. An operator whose secret
is wrong sees "received, signature did not match" here instead of nothing: each entry keeps the
event, the delivery id, the user agent, whether a signature or token was present (never its
value), the answer (202, 200, 401, 400, 413, 415...) and why, and the jobs the delivery created,
joined or (a redelivery) named again.

Kept in Redis, one stream per configured source (``XADD ... MAXLEN ~ KEPT``, trimmed to the
config's ``retention`` too, and expiring after it), one JSON field per entry; requests to an
unknown source share one stream, so a scanner inventing names cannot make keys. A job's page
finds the deliveries that fed it in its source's stream (entries name their jobs), so no key
per job is written for them.

The edge never waits for this: :meth:`DeliveryLog.add` appends a tuple to an in-process buffer
per stream that holds the newest ``KEPT`` entries (what a stream would trim at once anyway: in a
burst the older ones are overwritten and counted), and the receiver flushes it once a second in
one pipeline (:meth:`DeliveryLog.write`); the headers object is kept as it came, and read only
then. So a burst of thousands of deliveries a second costs the flush at most ``KEPT`` entries per
source, and the process holds no more than that many between flushes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from bridge import redact
from bridge.config import Config
from bridge.events import HeaderNames
from bridge.hooks import Accepted, Answer
from bridge.queueing import Receipt
from bridge.sources import SOURCES
from bridge.store import PREFIX, iso

KEPT = 1000  # entries per source's stream (approximately: Redis trims whole nodes), and per buffer
MAX_ID_PART = 2**64 - 1  # each part of a stream entry id
FIELD_MAX = 200  # characters kept of what a sender chose (user agent, delivery id, a source name)
UNKNOWN_SOURCE_KEY = f"{PREFIX}:deliveries-unknown-source"
_EVERY_HOST = list(dict.fromkeys(module.HEADERS for module in SOURCES.values()))  # for an unknown source
# Seen: one noted request, flat and made of strings and numbers only (a tuple the garbage collector
# stops tracking): when, the source asked for, event, delivery id, user agent, whether it was signed,
# status, outcome, reason; for a stored delivery its repository, refs, shas and jobs (id, target, how).
Seen = tuple[float, str, str, str, str, bool, int, str, str, str | None, str | None, str | None,
             tuple[tuple[str, str, str], ...] | None]

BATCH = 500  # entries per script call
SEQUENCE_KEY = f"{PREFIX}:deliveries-sequence"
# Stores a flush's entries: the stream of each, trimmed to its length and age, expiring after the retention.
# Entry ids are <ms>-<n> with n from one counter for every stream, so no two streams share an id and the
# merged listing pages exactly ("older than this id"); a clock that stepped back gets Redis's own id.
_STORE = """
-- KEYS[1] the sequence counter; ARGV[1] entries kept per stream, ARGV[2] the oldest entry id kept,
-- ARGV[3] retention (s), then per entry: its stream's key, the entry (JSON)
redis.replicate_commands()  -- Redis 6: TIME before a write
local count = (#ARGV - 3) / 2
local first = redis.call('INCRBY', KEYS[1], count) - count
local time = redis.call('TIME')
local ms = tostring(tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
local streams = {}
for i = 4, #ARGV, 2 do
  first = first + 1
  local added = redis.pcall('XADD', ARGV[i], 'MAXLEN', '~', ARGV[1], ms .. '-' .. first, 'e', ARGV[i + 1])
  if type(added) == 'table' and added.err then
    redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 1])
  end
  streams[ARGV[i]] = true
end
for key in pairs(streams) do
  redis.call('XTRIM', key, 'MINID', '~', ARGV[2])
  redis.call('EXPIRE', key, ARGV[3])
end
return 0
"""

VERDICTS = {
    202: "accepted",
    400: "refused: not a push this host sends",
    404: "unknown source: the config has no source of this name",
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

    def __init__(self, config: Config, redis: Redis, kept: int = KEPT):
        self.script = redis.register_script(_STORE)  # the edge runs it on a connection of its own
        self.retention = int(config.retention)
        self.headers = {name: SOURCES[source.kind].HEADERS for name, source in config.sources.items()}
        self.kept = kept
        # Per stream (a configured source, or None for every unknown one): the newest entries since the
        # last flush; one that would push out an older one counts as dropped (its stream would have
        # trimmed it anyway).
        self.pending: dict[str | None, deque[Seen]] = {}
        self.dropped = 0

    def add(self, source: str, headers: Mapping[str, str], answer: Answer, accepted: Accepted | None = None,
            receipt: Receipt | None = None) -> Answer:
        """Note one request for the next flush (:meth:`entry`); returns ``answer``, for the caller's ``return``."""
        entry = self.entry(source, headers, answer, accepted, receipt)
        stream = source if source in self.headers else None
        buffer = self.pending.get(stream)
        if buffer is None:
            buffer = self.pending[stream] = deque(maxlen=self.kept)
        elif len(buffer) == self.kept:
            self.dropped += 1
        buffer.append(entry)
        return answer

    def entry(self, source: str, headers: Mapping[str, str], answer: Answer, accepted: Accepted | None = None,
              receipt: Receipt | None = None) -> Seen:
        """One request as a flat tuple of strings and numbers: what the log keeps of it.

        A few header look-ups now rather than the request's objects kept until the flush: a second's
        thousands of live requests, headers and script arguments made every collection of the
        garbage collector longer, and showed in the pushes' p99. Encoding and scrubbing wait for the
        flush (:meth:`calls`).
        """
        names = self.headers.get(source)
        tried = [names] if names is not None else _EVERY_HOST
        event = next((value for n in tried if (value := headers.get(n.event))), "")
        agent = headers.get("User-Agent") or ""
        if accepted is not None:  # verified and stored: signed by definition, its refs known
            updates = {match.update: None for match in accepted.matches if match.update is not None}
            return (time.time(), source, event, receipt.delivery if receipt is not None else accepted.delivery.delivery,
                    agent, True, answer.status, _outcome(answer, receipt), _reason(answer), accepted.repo,
                    ", ".join(update.ref for update in updates), ", ".join(update.after for update in updates),
                    None if receipt is None else _jobs(accepted, receipt))
        return (time.time(), source, event, receipt.delivery if receipt is not None else _first(headers, tried), agent,
                any(headers.get(name) for n in tried for name in n.signature), answer.status,
                _outcome(answer, receipt), _reason(answer), None, None, None,
                None if receipt is None else _jobs(accepted, receipt))

    def take(self, newest: int | None = None) -> tuple[list[Seen], int]:
        """What was noted since the last take, oldest first, and how many did not fit: of each stream
        only its ``newest`` entries (default: all it holds, at most ``kept``)."""
        taken: list[Seen] = []
        dropped = self.dropped
        for buffer in self.pending.values():
            if newest is not None and len(buffer) > newest:
                dropped += len(buffer) - newest
                taken += list(buffer)[-newest:]
            else:
                taken += buffer
        if len(self.pending) > 1:
            taken.sort(key=_when)
        self.pending, self.dropped = {}, 0
        return taken, dropped

    def calls(self, seen: Iterable[Seen]) -> list[tuple[list[str], list[Any]]]:
        """The script calls (keys, args) that store ``seen``, ``BATCH`` entries a call so no call holds
        Redis long: one XADD each, then trim and expiry per stream, all inside Redis."""
        args = [arg for entry in seen
                for arg in (stream_key(entry[1] if entry[1] in self.headers else None), self._encode(entry))]
        oldest = f"{int((time.time() - self.retention) * 1000)}-0"
        return [([SEQUENCE_KEY], [KEPT, oldest, self.retention, *args[start:start + 2 * BATCH]])
                for start in range(0, len(args), 2 * BATCH)]

    def write(self, pipe: Pipeline, seen: Iterable[Seen]) -> None:
        """Queue on ``pipe`` the script calls that store ``seen`` (the Flask view's way: one at a time)."""
        for keys, args in self.calls(seen):
            self.script(keys=keys, args=args, client=pipe)

    @staticmethod
    def _encode(entry: Seen) -> bytes:
        """One stream entry: one JSON object, scrubbed as a whole, what a sender chose cut to ``FIELD_MAX``."""
        at, source, event, delivery, agent, signed, status, outcome, reason, repo, ref, after, jobs = entry
        fields: dict[str, Any] = {
            "at": at, "source": source[:FIELD_MAX], "event": event[:FIELD_MAX], "delivery": delivery[:FIELD_MAX],
            "agent": agent[:FIELD_MAX], "signed": signed, "status": status, "outcome": outcome, "reason": reason,
        }
        if repo is not None:
            fields.update(repo=repo, ref=ref, after=after)
        if jobs is not None:
            fields["jobs"] = [{"id": job_id, "target": target, "how": how} for job_id, target, how in jobs]
        return redact.scrub(orjson.dumps(fields).decode()).encode()

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
        return self._matching(redis, sources, lambda entry: entry["delivery"] == delivery)

    def fed(self, redis: Redis, source: str, job_id: str) -> list[dict[str, Any]]:
        """The deliveries of ``source`` that created or joined the job, newest first (as far back as the
        log keeps: the newest ``KEPT`` of the source)."""
        return self._matching(redis, [source], lambda entry: any(job["id"] == job_id and job["how"] != "redelivered"
                                                                 for job in entry["jobs"]))

    def _matching(self, redis: Redis, sources: Iterable[str], wanted: Callable[[dict[str, Any]], bool]
                  ) -> list[dict[str, Any]]:
        keys = [stream_key(source) for source in sources]
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.xrevrange(key, "+", "-")
        entries = [entry for key, found in zip(keys, pipe.execute(), strict=True) for entry in _decode(key, found)
                   if wanted(entry)]
        return sorted(entries, key=_order, reverse=True)


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


def _reason(answer: Answer) -> str:
    body = answer.body
    return str(body.get("error") or body.get("ignored") or "")


def _outcome(answer: Answer, receipt: Receipt | None) -> str:
    if answer.outcome is not None:
        return answer.outcome
    if receipt is not None:
        return "duplicate" if receipt.seen_before else "accepted"
    return ""


def _jobs(accepted: Accepted | None, receipt: Receipt) -> tuple[tuple[str, str, str], ...]:
    """The jobs a stored delivery created, joined, or (seen before) named again: (id, target, how)."""
    if receipt.seen_before:
        return tuple((job_id, target, "redelivered") for job_id, target, _ in receipt.seen)
    if accepted is None:
        raise ValueError("a stored delivery's receipt without what was stored")
    prepared = [job_id for _, (_, job_id, *_rest) in accepted.delivery.targets]
    return tuple((job_id, target, "created" if job_id == mine else "joined")
                 for job_id, target, mine in zip(receipt.job_ids, accepted.targets, prepared, strict=True))


def _decode(key: bytes | str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    decoded = []
    for entry_id, raw in entries:
        entry: dict[str, Any] = orjson.loads(raw[b"e"])
        entry["id"] = entry_id.decode()
        entry["at"] = iso(entry["at"])
        entry.setdefault("jobs", [])
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


def _when(entry: Seen) -> float:
    return entry[0]
