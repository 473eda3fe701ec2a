"""The job record: one Redis hash per job, and the only module that knows the keys.

RQ keeps its own job hash for execution (same id); this record is what users see. It outlives
RQ's bookkeeping for ``retention`` seconds, is indexed by creation time for listing, and is
written by the web side (creation, see ``bridge.queueing``) and the worker (progress, outcome).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from redis import Redis

PREFIX = "syncbridge"
TERMINAL = frozenset({"completed", "failed"})
# Fields a user sees, in the order INTERFACE.md shows them; the rest are the worker's bookkeeping.
PUBLIC_FIELDS = ("id", "status", "source", "repo", "ref", "after", "delivery", "target", "provider",
                 "attempts", "created_at", "started_at", "finished_at", "remote", "trigger", "error")
_JSON_FIELDS = frozenset({"remote", "refs", "state"})
_INT_FIELDS = frozenset({"attempts", "pushes", "errors", "polls"})

# Moves a queued job to in_progress and frees its target's "waiting" slot, so that the next push
# queues a follow-up sync instead of joining one that has already begun (see bridge.queueing).
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return status end
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[1])
local waiting = redis.call('HGET', KEYS[1], 'waiting_key')
if waiting and redis.call('GET', waiting) == ARGV[2] then redis.call('DEL', waiting) end
return 'in_progress'
"""


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds, the format of every timestamp in a job."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def delivery_key(delivery: str) -> str:
    return f"{PREFIX}:delivery:{delivery}"


def waiting_key(coalesce_key: str) -> str:
    """Holds the id of the one job waiting in the queue for a target (and ref filter)."""
    return f"{PREFIX}:waiting:{coalesce_key}"


INDEX_KEY = f"{PREFIX}:jobs"
LAST_SUCCESS_KEY = f"{PREFIX}:last_success"


def encode(fields: dict[str, Any]) -> dict[str, str]:
    """A job's fields as the strings a Redis hash holds (JSON for structures, '' for None)."""
    out = {}
    for name, value in fields.items():
        if name in _JSON_FIELDS:
            out[name] = json.dumps(value, separators=(",", ":"))
        else:
            out[name] = "" if value is None else str(value)
    return out


def decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """The inverse of :func:`encode`."""
    job: dict[str, Any] = {}
    for key, value in raw.items():
        name, text = key.decode(), value.decode()
        if name in _JSON_FIELDS:
            job[name] = json.loads(text) if text else None
        elif name in _INT_FIELDS:
            job[name] = int(text or 0)
        else:
            job[name] = text or None
    return job


def public(job: dict[str, Any]) -> dict[str, Any]:
    """The job exactly as ``GET /jobs/<id>`` shows it: no internal bookkeeping."""
    return {name: job.get(name) for name in PUBLIC_FIELDS}


class Store:
    """Reads and updates job records; creation is atomic with the enqueue in ``bridge.queueing``."""

    def __init__(self, redis: Redis, retention: float):
        self.redis = redis
        self.retention = int(retention)
        self._start = redis.register_script(_START)

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(job_key(job_id))
        return decode(raw) if raw else None

    def get_many(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Records for ``job_ids`` in one round trip, skipping expired ones."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [decode(raw) for raw in pipe.execute() if raw]

    def delivery(self, delivery: str) -> list[str] | None:
        """Job ids a delivery created or joined, or None when it was never seen (or expired)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(delivery_key(delivery))
        pipe.lrange(delivery_key(delivery), 0, -1)
        exists, ids = pipe.execute()
        return [job_id.decode() for job_id in ids] if exists else None

    def recent(self, *, status: str | None = None, target: str | None = None, repo: str | None = None,
               limit: int = 50, scan: int = 5000) -> list[dict[str, Any]]:
        """Newest jobs first, filtered; scans at most ``scan`` of the newest ids."""
        self.redis.zremrangebyscore(INDEX_KEY, "-inf", time.time() - self.retention)
        found: list[dict[str, Any]] = []
        page = max(limit, 100)
        for start in range(0, scan, page):
            ids = [raw.decode() for raw in self.redis.zrevrange(INDEX_KEY, start, start + page - 1)]
            if not ids:
                break
            for job in self.get_many(ids):
                if (status in (None, job["status"]) and target in (None, job["target"])
                        and repo in (None, job["repo"])):
                    found.append(job)
                    if len(found) >= limit:
                        return found
        return found

    def start(self, job_id: str) -> str | None:
        """Mark the job in_progress (once) and free its waiting slot; returns the status after."""
        result = self._start(keys=[job_key(job_id)], args=[now_iso(), job_id])
        return result.decode() if isinstance(result, bytes) else result

    def update(self, job_id: str, **fields: Any) -> None:
        """Write some fields of a job (worker progress); JSON fields are encoded."""
        self.redis.hset(job_key(job_id), mapping=encode(fields))

    def increment(self, job_id: str, field: str) -> int:
        return int(self.redis.hincrby(job_key(job_id), field, 1))

    def finish(self, job_id: str, status: str, *, error: str | None = None, **fields: Any) -> None:
        """Record a terminal status; the record then lives ``retention`` seconds more."""
        if status not in TERMINAL:
            raise ValueError(f"{status} is not terminal")
        finished_at = now_iso()
        pipe = self.redis.pipeline()
        pipe.hset(job_key(job_id), mapping=encode({**fields, "status": status, "error": error,
                                                   "finished_at": finished_at}))
        pipe.expire(job_key(job_id), self.retention)
        pipe.hget(job_key(job_id), "target")
        target = pipe.execute()[-1]
        if status == "completed" and target:
            self.redis.hset(LAST_SUCCESS_KEY, target.decode(), json.dumps({"job": job_id, "at": finished_at}))

    def last_successes(self) -> dict[str, dict[str, str]]:
        """Per target, the newest completed job and when it finished."""
        return {name.decode(): json.loads(value) for name, value in self.redis.hgetall(LAST_SUCCESS_KEY).items()}
