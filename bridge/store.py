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

from bridge import mirrors, redact

PREFIX = "syncbridge"
TERMINAL = frozenset({"completed", "failed"})
# Fields a user sees, in the order INTERFACE.md shows them; the rest are the worker's bookkeeping.
PUBLIC_FIELDS = ("id", "status", "source", "repo", "ref", "after", "delivery", "target", "mirror", "provider",
                 "attempts", "created_at", "started_at", "finished_at", "remote", "trigger", "error")
_JSON_FIELDS = frozenset({"remote", "refs", "state"})
_INT_FIELDS = frozenset({"attempts", "pushes", "errors", "polls"})

RQ_JOB_PREFIX = "rq:job:"  # RQ's own job hash, same id as the record (``Job.redis_job_namespace_prefix``)

# Lua: whether RQ can still run a job: its hash exists and RQ has not ended it. A lane marker that
# names any other job is stale: the job was deleted or cancelled with RQ's own tools (rq-dashboard,
# ``Job.delete()``), or RQ gave up on it without syncbridge hearing of it. Shared by the scripts here
# and the enqueue script (bridge.queueing), which all drop such markers on the spot.
RQ_ALIVE = """
local function rq_alive(rq_prefix, id)
  local s = redis.call('HGET', rq_prefix .. id, 'status')
  return s ~= false and s ~= 'finished' and s ~= 'failed' and s ~= 'stopped' and s ~= 'canceled'
end
"""

# Starts a queued job unless its mirror is busy. A mirror (the repository a target syncs) runs at
# most one sync at a time, and starts them at least ``min_interval`` apart; a job that must wait
# stays queued, keeps its lane's waiting slot (later pushes of its lane keep joining it) and is asked
# again later. Starting frees the waiting slot, so the next push queues a follow-up instead of
# joining a sync that has already begun (see bridge.queueing and docs/DESIGN.md).
_START = RQ_ALIVE + """
-- KEYS[1] job record; ARGV: now (iso), job id, now (epoch s), min interval (s), key prefix, running ttl (s),
-- RQ job key prefix
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return {status or ''} end
local mirror, lane = unpack(redis.call('HMGET', KEYS[1], 'mirror', 'lane'))
if mirror then
  local prefix, now, spacing = ARGV[5], tonumber(ARGV[3]), tonumber(ARGV[4])
  local running_key, lanes = prefix .. 'running:' .. mirror, prefix .. 'lanes:' .. mirror
  local running = redis.call('GET', running_key)
  if running and running ~= ARGV[2] and rq_alive(ARGV[7], running) and
      redis.call('HGET', prefix .. 'job:' .. running, 'status') == 'in_progress' then
    -- ask again in 2 s per lane waiting (at most 30 s): the sync's end wakes the next one at once
    return {'wait', tostring(math.min(30, 2 * math.max(1, redis.call('HLEN', lanes))))}
  end
  local last = tonumber(redis.call('GET', prefix .. 'last_start:' .. mirror) or '0')
  if now - last < spacing then return {'wait', tostring(spacing - (now - last))} end
  redis.call('SET', running_key, ARGV[2], 'EX', ARGV[6])
  redis.call('SET', prefix .. 'last_start:' .. mirror, ARGV[3], 'EX', math.ceil(spacing) + 60)
  if lane and redis.call('HGET', lanes, lane) == ARGV[2] then
    redis.call('HDEL', lanes, lane)
  end
end
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[1])
return {'in_progress'}
"""

# Records a terminal status, frees whatever slot of its mirror the job held (running, or its lane's
# waiting slot when it ends before it started), notes a target's last success or failure, and makes
# the job's provider calls live as long as the record.
_FINISH = """
-- KEYS[1] job record, KEYS[2] last-success hash, KEYS[3] active set, KEYS[4] last-failure hash,
-- KEYS[5] the job's provider calls; ARGV: retention, job id, key prefix, then fields (k v ...)
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[1]))
redis.call('SREM', KEYS[3], ARGV[2])
local mirror, lane, target = unpack(redis.call('HMGET', KEYS[1], 'mirror', 'lane', 'target'))
if mirror then
  if redis.call('GET', ARGV[3] .. 'running:' .. mirror) == ARGV[2] then
    redis.call('DEL', ARGV[3] .. 'running:' .. mirror)
  end
  local lanes = ARGV[3] .. 'lanes:' .. mirror
  if lane and redis.call('HGET', lanes, lane) == ARGV[2] then
    redis.call('HDEL', lanes, lane)
  end
end
local status, finished, error = unpack(redis.call('HMGET', KEYS[1], 'status', 'finished_at', 'error'))
if status == 'completed' and target then
  redis.call('HSET', KEYS[2], target, cjson.encode({job = ARGV[2], at = finished}))
elseif status == 'failed' and target then
  redis.call('HSET', KEYS[4], target, cjson.encode({job = ARGV[2], at = finished, error = error or ''}))
end
return mirror or ''
"""

# Whether RQ can still run a job (RQ_ALIVE): a job whose record is not ended but which RQ cannot run
# is stuck until the periodic tick ends it; an operator may retry it at once.
_ALIVE = RQ_ALIVE + """
-- ARGV[1] RQ job key prefix, ARGV[2] job id
return rq_alive(ARGV[1], ARGV[2]) and 1 or 0
"""

# Jobs the record says are queued or running but RQ can no longer run (see RQ_ALIVE), with RQ's
# status of them ('' when RQ's job is gone); ids whose record ended or expired leave the active set.
_ORPHANS = RQ_ALIVE + """
-- KEYS[1] active set; ARGV[1] job key prefix, ARGV[2] RQ job key prefix
local orphans = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local status = redis.call('HGET', ARGV[1] .. id, 'status')
  if status ~= 'queued' and status ~= 'in_progress' then
    redis.call('SREM', KEYS[1], id)
  elseif not rq_alive(ARGV[2], id) then
    table.insert(orphans, {id, redis.call('HGET', ARGV[2] .. id, 'status') or ''})
  end
end
return orphans
"""


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds, the format of every timestamp in a job."""
    return iso(time.time())


def iso(epoch: float, timespec: str = "milliseconds") -> str:
    """A Unix time as UTC ISO 8601 (``...Z``)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def epoch(stamp: str) -> float:
    """The inverse of :func:`iso`."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def delivery_key(source: str, delivery: str) -> str:
    """The job ids of one delivery. Keyed per source: a host's delivery ids are unique on that host
    only, so another source's push with the same id is new work, never a redelivery."""
    return f"{PREFIX}:delivery:{source}:{delivery}"


def calls_key(job_id: str) -> str:
    """The job's provider calls, oldest first, the last ``CALLS_KEPT`` of them (JSON each)."""
    return f"{PREFIX}:job-calls:{job_id}"


def running_key(mirror: str) -> str:
    """The job syncing ``mirror`` now (see docs/DESIGN.md, "Mirrors and lanes")."""
    return f"{PREFIX}:running:{mirror}"


def lanes_key(mirror: str) -> str:
    """A hash of a mirror's lanes to the one job waiting in the queue for each (see docs/DESIGN.md)."""
    return f"{PREFIX}:lanes:{mirror}"


def seen_key(target: str) -> str:
    """The repositories whose pushes went through a templated target: what its reconciles sync."""
    return f"{PREFIX}:seen:{target}"


SEEN_LIMIT = 1000  # repositories a templated target's reconcile remembers (the most recently pushed)
INDEX_KEY = f"{PREFIX}:jobs"
ACTIVE_KEY = f"{PREFIX}:active"  # ids of jobs created queued and not yet ended: what the orphan check reads
LAST_SUCCESS_KEY = f"{PREFIX}:last_success"
LAST_FAILURE_KEY = f"{PREFIX}:last_failure"  # target -> {job, at, error} of its newest failed job
CALLS_KEPT = 50  # provider calls kept per job: a long follow keeps its latest polls
SWEEPS_KEY = f"{PREFIX}:sweeps"  # source -> the last sweep's report (JSON)
NEXT_SWEEP_KEY = f"{PREFIX}:sweep:next"  # source -> epoch of the next sweep
NEXT_RECONCILE_KEY = f"{PREFIX}:reconcile:next"  # target -> epoch of the next reconcile sync


def encode(fields: dict[str, Any]) -> dict[str, str]:
    """A job's fields as the strings a Redis hash holds (JSON for structures, '' for None).

    Every string is scrubbed of secrets on the way: provider answers (an error quoting our token,
    a mirror's ``last_error`` with a URL's password) are stored here and shown by every view and
    notification, so this is where they are cleaned, once (see ``bridge.redact``).
    """
    out = {}
    for name, value in fields.items():
        if name in _JSON_FIELDS:
            out[name] = json.dumps(redact.scrub(value), separators=(",", ":"))
        else:
            out[name] = "" if value is None else redact.scrub(str(value))
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
    """The job exactly as ``GET /jobs/<id>`` shows it: no internal bookkeeping.

    ``mirror`` is the mirror a templated target synced for this job (``projects/acme/repos/widgets``),
    read from the record's mirror key; null for a target that names one mirror.
    """
    return {name: job.get(name) for name in PUBLIC_FIELDS} | {"mirror": mirrors.shown(job)}


class Store:
    """Reads and updates job records; creation is atomic with the enqueue in ``bridge.queueing``."""

    def __init__(self, redis: Redis, retention: float):
        self.redis = redis
        self.retention = int(retention)
        self._start = redis.register_script(_START)
        self._finish = redis.register_script(_FINISH)
        self._orphans = redis.register_script(_ORPHANS)
        self._alive = redis.register_script(_ALIVE)

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(job_key(job_id))
        return decode(raw) if raw else None

    def get_many(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Records for ``job_ids`` in one round trip, skipping expired ones."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [decode(raw) for raw in pipe.execute() if raw]

    def delivery(self, source: str, delivery: str) -> list[str] | None:
        """Job ids a delivery of ``source`` created or joined, or None when never seen (or expired)."""
        return self.deliveries(delivery, [source]).get(source)

    def deliveries(self, delivery: str, sources: Iterable[str]) -> dict[str, list[str]]:
        """Per source of ``sources`` that has seen ``delivery``, the job ids it created or joined."""
        names = list(sources)
        pipe = self.redis.pipeline(transaction=False)
        for source in names:
            pipe.exists(delivery_key(source, delivery))
            pipe.lrange(delivery_key(source, delivery), 0, -1)
        replies = pipe.execute()
        return {source: [job_id.decode() for job_id in ids]
                for source, exists, ids in zip(names, replies[::2], replies[1::2], strict=True) if exists}

    def recent(self, *, status: str | None = None, target: str | None = None, repo: str | None = None,
               limit: int = 50, scan: int = 5000) -> list[dict[str, Any]]:
        """Newest jobs first whose target and repo are exactly those given; scans at most ``scan`` of the newest ids."""
        return self.page(status=status, target=target, repo=repo, limit=limit, scan=scan)[0]

    def page(self, *, status: str | None = None, target: str | None = None, repo: str | None = None,
             limit: int = 50, offset: int = 0, contains: bool = False,
             scan: int = 5000) -> tuple[list[dict[str, Any]], bool]:
        """Matching jobs ``offset`` to ``offset + limit``, newest first, and whether there are more.

        ``contains``: ``target`` and ``repo`` match any part of the name, in any case (the dashboard's
        filters), rather than the whole of it (the API's). At most ``scan`` of the newest ids are read.
        """
        self.redis.zremrangebyscore(INDEX_KEY, "-inf", time.time() - self.retention)
        wanted = {"target": target, "repo": repo}
        if contains:
            def matches(job: dict[str, Any]) -> bool:
                return all(value.lower() in (job[name] or "").lower() for name, value in wanted.items() if value)
        else:
            def matches(job: dict[str, Any]) -> bool:
                return all(value in (None, job[name]) for name, value in wanted.items())
        found: list[dict[str, Any]] = []
        page = max(limit, 100)
        for start in range(0, scan + offset, page):
            ids = [raw.decode() for raw in self.redis.zrevrange(INDEX_KEY, start, start + page - 1)]
            if not ids:
                break
            for job in self.get_many(ids):
                if status in (None, job["status"]) and matches(job):
                    found.append(job)
                    if len(found) > offset + limit:
                        return found[offset:offset + limit], True
        return found[offset:offset + limit], False

    def start(self, job_id: str, min_interval: float, running_ttl: float) -> tuple[str, float]:
        """Start the job if its mirror allows: ``("in_progress", 0)``, ``("wait", seconds)``, or its status."""
        reply = self._start(keys=[job_key(job_id)], args=[now_iso(), job_id, f"{time.time():.6f}", min_interval,
                                                           f"{PREFIX}:", int(running_ttl), RQ_JOB_PREFIX])
        status = reply[0].decode()
        return status, float(reply[1]) if len(reply) > 1 else 0.0

    def waiting_jobs(self, mirror: str) -> list[str]:
        """The jobs waiting in the queue for ``mirror``, one per lane (for a few lanes, in the order they queued)."""
        return [job_id.decode() for job_id in self.redis.hvals(lanes_key(mirror))]

    def mirror_waiting(self, mirror: str) -> bool:
        """Whether any job for ``mirror`` waits in the queue (in any of its lanes)."""
        return bool(self.redis.hlen(lanes_key(mirror)))

    def note_seen(self, target: str, repo: str, limit: int = SEEN_LIMIT) -> None:
        """Remember a push of ``repo`` through the templated ``target``: the ``limit`` most recently
        pushed repositories are kept, each forgotten ``retention`` after its last push."""
        now, key = time.time(), seen_key(target)
        pipe = self.redis.pipeline()
        pipe.zadd(key, {repo: now})
        pipe.zremrangebyscore(key, "-inf", now - self.retention)
        pipe.zremrangebyrank(key, 0, -limit - 1)
        pipe.expire(key, self.retention)
        pipe.execute()

    def seen(self, target: str) -> list[str]:
        """The repositories pushed through the templated ``target`` within ``retention``, newest first."""
        recent = self.redis.zrevrangebyscore(seen_key(target), "+inf", time.time() - self.retention)
        return [repo.decode() for repo in recent]

    def orphans(self) -> list[tuple[str, str]]:
        """Jobs queued or running by their record whose RQ job cannot run, with RQ's status ('' if gone)."""
        reply = self._orphans(keys=[ACTIVE_KEY], args=[job_key(""), RQ_JOB_PREFIX])
        return [(job_id.decode(), status.decode()) for job_id, status in reply]

    def alive_in_rq(self, job_id: str) -> bool:
        """Whether RQ can still run the job (its RQ hash exists and RQ has not ended it)."""
        return bool(self._alive(args=[RQ_JOB_PREFIX, job_id]))

    def record_call(self, job_id: str, call: dict[str, Any]) -> None:
        """Append one provider call (or an operator's retry) to the job's history: the last ``CALLS_KEPT``."""
        key = calls_key(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(redact.scrub(call), separators=(",", ":")))
        pipe.ltrim(key, -CALLS_KEPT, -1)
        pipe.expire(key, self.retention)
        pipe.execute()

    def calls(self, job_id: str) -> list[dict[str, Any]]:
        """The job's provider calls, oldest first."""
        return [json.loads(raw) for raw in self.redis.lrange(calls_key(job_id), 0, -1)]

    def activity(self) -> dict[str, dict[str, int]]:
        """Per target, its jobs not yet ended: ``queued``, ``running`` (holding its mirror's running slot),
        and ``stalled`` (in progress by the record, but the slot expired: no worker has followed it since
        the target's timeout)."""
        ids = [raw.decode() for raw in self.redis.smembers(ACTIVE_KEY)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(job_key(job_id), "target", "status", "mirror")
        records = [(job_id, *(value.decode() if value else "" for value in fields))
                   for job_id, fields in zip(ids, pipe.execute(), strict=True)]
        running = [(job_id, target, mirror) for job_id, target, status, mirror in records if status == "in_progress"]
        pipe = self.redis.pipeline(transaction=False)
        for _, _, mirror in running:
            pipe.get(running_key(mirror or ""))
        holders = {job_id: holder == job_id.encode()
                   for (job_id, _, _), holder in zip(running, pipe.execute(), strict=True)}
        counts: dict[str, dict[str, int]] = {}
        for job_id, target, status, _ in records:
            if status not in ("queued", "in_progress") or not target:
                continue
            state = "queued" if status == "queued" else "running" if holders[job_id] else "stalled"
            per_target = counts.setdefault(target, {"queued": 0, "running": 0, "stalled": 0})
            per_target[state] += 1
        return counts

    def update(self, job_id: str, **fields: Any) -> None:
        """Write some fields of a job (worker progress); JSON fields are encoded."""
        self.redis.hset(job_key(job_id), mapping=encode(fields))

    def increment(self, job_id: str, field: str) -> int:
        return int(self.redis.hincrby(job_key(job_id), field, 1))

    def finish(self, job_id: str, status: str, *, error: str | None = None, **fields: Any) -> str | None:
        """Record a terminal status (the record then lives ``retention`` more); returns the job's mirror."""
        if status not in TERMINAL:
            raise ValueError(f"{status} is not terminal")
        values = encode({**fields, "status": status, "error": error, "finished_at": now_iso()})
        flat = [item for pair in values.items() for item in pair]
        mirror = self._finish(keys=[job_key(job_id), LAST_SUCCESS_KEY, ACTIVE_KEY, LAST_FAILURE_KEY,
                                    calls_key(job_id)],
                              args=[self.retention, job_id, f"{PREFIX}:", *flat])
        return mirror.decode() or None

    def last_successes(self) -> dict[str, dict[str, str]]:
        """Per target, the newest completed job and when it finished."""
        return {name.decode(): json.loads(value) for name, value in self.redis.hgetall(LAST_SUCCESS_KEY).items()}

    def last_failures(self) -> dict[str, dict[str, str]]:
        """Per target, the newest failed job, when it ended and why."""
        return {name.decode(): json.loads(value) for name, value in self.redis.hgetall(LAST_FAILURE_KEY).items()}

    def schedule(self, key: str, name: str, when: float) -> None:
        """Note when the periodic task ``name`` (a source's sweep, a target's reconcile) runs next."""
        self.redis.hset(key, name, f"{when:.3f}")

    def schedules(self, key: str) -> dict[str, float]:
        return {name.decode(): float(value) for name, value in self.redis.hgetall(key).items()}

    def save_sweep(self, source: str, report: dict[str, Any]) -> None:
        self.redis.hset(SWEEPS_KEY, source, json.dumps(redact.scrub(report)))

    def sweeps(self) -> dict[str, dict[str, Any]]:
        """Per source, the last redelivery sweep's report."""
        return {name.decode(): json.loads(value) for name, value in self.redis.hgetall(SWEEPS_KEY).items()}

    def claim_redelivery(self, delivery: str, ttl: float) -> bool:
        """True the first time a delivery is claimed for redelivery (at most once per delivery)."""
        return bool(self.redis.set(f"{PREFIX}:redelivered:{delivery}", "1", nx=True, ex=int(ttl)))

    def lock(self, name: str, ttl: float) -> bool:
        """A best-effort cluster-wide lock: one sweep at a time across all workers."""
        return bool(self.redis.set(f"{PREFIX}:lock:{name}", "1", nx=True, ex=int(ttl)))

    def unlock(self, name: str) -> None:
        self.redis.delete(f"{PREFIX}:lock:{name}")
