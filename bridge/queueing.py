"""Dedupe, coalesce and enqueue pushes atomically, many deliveries in one Redis round trip.

One Lua script stores a batch of deliveries (see ``bridge.group_commit``), in arrival order:

1. a delivery id its source sent before returns the jobs it made (a redelivery does no new work);
   ids are kept per source, since a host's ids are unique on that host only;
2. per target, a job still *waiting* in the queue in the same *lane* (the same mirror: a templated
   target's, rendered from the repository by ``bridge.mirrors``; the same source, repository
   and ref filter) absorbs the push (its ref, sha and delivery move to the newest push)
   instead of queueing a second sync; once a worker starts a job the slot is freed
   (``Store.start``), so a push during a running sync queues exactly one follow-up, which starts
   after that push arrived and so covers it. A waiting job RQ can no longer run (deleted or
   cancelled with RQ's own tools) is never joined: the push queues a new job in its place;
3. otherwise it writes the job record and RQ's own job hash and pushes the id on RQ's queue.

RQ's job hash is built by RQ (``Job.create(...).to_dict()``, as RQ's own unique-enqueue script
does) once per execution timeout, since every other field but the timestamps and description is
the same for every sync job: the job finds its id through ``rq.get_current_job()``, so its
arguments are empty. The function is named by its dotted path: the web side never imports
``workers``. The script receives each distinct RQ hash once per batch and the job record as
values only, so a push that joins a waiting job (the common case in a burst) costs a few dozen
short arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cache
from string import Template
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.utils import now, utcformat

from bridge import metrics, store
from bridge.config import TargetBase
from bridge.events import RefUpdate
from bridge.mirrors import MirrorKeys
from bridge.routing import Match

QUEUE_NAME = "syncbridge"
NOTIFY_QUEUE_NAME = "syncbridge-notify"  # its own queue: a slow chat service never delays a sync
SYNC_FUNCTION = "workers.jobs.sync"
FAILURE_CALLBACK = "workers.jobs.on_failure"
# One execution makes one provider call, bounded by the target's request_timeout; RQ's own limit
# sits just above it. It also sets how soon a killed worker's job is recovered: RQ declares it
# abandoned 60 s after this limit (SimpleWorker's heartbeat TTL is the job timeout + 60 s).
EXECUTION_MARGIN = 10
# A worker that dies mid-execution leaves the job abandoned; RQ requeues it this many times.
ABANDONED_RETRIES = Retry(max=3, interval=[5, 15, 30])
# How long RQ keeps a completed sync (its job hash, result and entry in its finished registry), for
# RQ's own views (rq-dashboard, ``rq info``); syncbridge's record keeps it for ``retention``.
RESULT_TTL = 3600
# The job record's fields, in the order the script receives their values.
JOB_FIELDS = ("id", "status", "source", "repo", "ref", "before", "after", "delivery", "target",
              "provider", "attempts", "created_at", "trigger", "refs", "lane", "mirror", "pushes")
# Per target of a delivery: the mirror's lanes key, job id, RQ hash index, RQ description, then JOB_FIELDS' values.
_PER_TARGET = 4 + len(JOB_FIELDS)

_ENQUEUE = Template(store.RQ_ALIVE + """
-- KEYS[1] jobs index, KEYS[2] RQ queue key, KEYS[3] RQ queues set, KEYS[4] the webhooks_received metric hash,
-- KEYS[5] the active jobs set
-- ARGV[1] retention, ARGV[2] now (epoch s), ARGV[3] now (RQ's format), ARGV[4] job key prefix,
-- ARGV[5] RQ job key prefix, ARGV[6] number of RQ hashes, then each: n, n items (k v ...);
-- then per delivery: delivery key, metric field if new, metric field if seen before, number of
-- targets, and per target: the mirror's lanes key, job id, RQ hash index, description, the record's values.
-- Returns per delivery: 'new', the number of jobs it created and its job ids; or 'seen', 0 and
-- (job id, target, status) for each of its jobs.
local FIELDS = {$fields}
local REF, BEFORE, AFTER, DELIVERY, LANE = $ref, $before, $after, $delivery, $lane
local PER_TARGET = $per_target
local retention = tonumber(ARGV[1])
local rq_hashes = {}
local i = 7
for t = 1, tonumber(ARGV[6]) do
  local n = tonumber(ARGV[i])
  rq_hashes[t] = {unpack(ARGV, i + 1, i + n)}
  i = i + 1 + n
end
local replies = {}
local created = false
while i <= #ARGV do
  local delivery, ntargets = ARGV[i], tonumber(ARGV[i + 3])
  if redis.call('EXISTS', delivery) == 1 then
    -- Seen before: its jobs as they are now (id, target, status each), in this same round trip.
    redis.call('HINCRBY', KEYS[4], ARGV[i + 2], 1)
    local seen = {'seen', 0}
    for _, id in ipairs(redis.call('LRANGE', delivery, 0, -1)) do
      local job = redis.call('HMGET', ARGV[4] .. id, 'target', 'status')
      if job[1] then  -- a record that expired before its delivery is left out
        table.insert(seen, id)
        table.insert(seen, job[1])
        table.insert(seen, job[2])
      end
    end
    table.insert(replies, seen)
    i = i + 4 + ntargets * PER_TARGET
  else
    redis.call('HINCRBY', KEYS[4], ARGV[i + 1], 1)
    local result = {'new', 0}  -- then how many jobs it created, then its job ids
    i = i + 4
    for _ = 1, ntargets do
      local lanes, id = ARGV[i], ARGV[i + 1]
      local v = i + 3  -- ARGV[v + k] is the value of FIELDS[k]
      local lane = ARGV[v + LANE]
      local current = redis.call('HGET', lanes, lane)
      local joined = false
      if current and redis.call('HGET', ARGV[4] .. current, 'status') == 'queued' and rq_alive(ARGV[5], current) then
        -- The waiting sync has not started: it will cover this push too. Show the newest push
        -- (a reconcile, which has no ref, leaves the job as it is).
        if ARGV[v + REF] ~= '' then
          redis.call('HSET', ARGV[4] .. current, 'ref', ARGV[v + REF], 'before', ARGV[v + BEFORE],
                     'after', ARGV[v + AFTER], 'delivery', ARGV[v + DELIVERY])
          redis.call('HSET', ARGV[5] .. current, 'description', ARGV[i + 3])
        end
        redis.call('HINCRBY', ARGV[4] .. current, 'pushes', 1)
        table.insert(result, current)
        joined = true
      end
      if not joined then  -- a new job; a stale marker (RQ can no longer run its job) is replaced
        local record = {}
        for k, name in ipairs(FIELDS) do
          record[2 * k - 1] = name
          record[2 * k] = ARGV[v + k]
        end
        local key = ARGV[4] .. id
        redis.call('HSET', key, unpack(record))
        redis.call('EXPIRE', key, retention)
        redis.call('ZADD', KEYS[1], ARGV[2], id)
        redis.call('SADD', KEYS[5], id)
        local rq_key = ARGV[5] .. id
        redis.call('HSET', rq_key, unpack(rq_hashes[tonumber(ARGV[i + 2])]))
        redis.call('HSET', rq_key, 'created_at', ARGV[3], 'enqueued_at', ARGV[3], 'description', ARGV[i + 3])
        redis.call('RPUSH', KEYS[2], id)
        redis.call('HSET', lanes, lane, id)
        redis.call('EXPIRE', lanes, retention)
        table.insert(result, id)
        result[2] = result[2] + 1
        created = true
      end
      i = i + PER_TARGET
    end
    redis.call('RPUSH', delivery, unpack(result, 3))
    redis.call('EXPIRE', delivery, retention)
    table.insert(replies, result)
  end
end
if created then
  redis.call('SADD', KEYS[3], KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - retention)
return replies
""").substitute(fields=", ".join(f"'{name}'" for name in JOB_FIELDS), per_target=_PER_TARGET,
               **{name: JOB_FIELDS.index(name) + 1 for name in ("ref", "before", "after", "delivery", "lane")})
_REQUEUE = """
-- KEYS[1] job record, KEYS[2] RQ job hash, KEYS[3] RQ queue, KEYS[4] active jobs set, KEYS[5] RQ's failed
-- registry; ARGV[1] retention, ARGV[2] job id, ARGV[3] n, n record fields (k v ...), then RQ job fields (k v ...)
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' then return status or '' end
local n = tonumber(ARGV[3])
redis.call('HDEL', KEYS[1], 'started_at', 'finished_at', 'error', 'last_error')
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4 + n))
redis.call('RPUSH', KEYS[3], ARGV[2])
return 'requeued'
"""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the receiver answers: the delivery, its job ids, whether it was seen before, and how many
    of its jobs it created (the others were waiting jobs it joined); for a delivery seen before,
    ``seen`` holds (job id, target, status) of each of its jobs as they are now."""

    delivery: str
    job_ids: list[str]
    seen_before: bool
    created: int
    seen: tuple[tuple[str, str, str], ...] = ()


@dataclass(slots=True)
class Delivery:
    """One delivery's part of a batch: its id and key, metric fields, and per target the script's arguments."""

    delivery: str
    key: str  # per source: see bridge.store.delivery_key
    metric_new: str
    metric_seen: str
    # per target: (execution timeout, [the mirror's lanes key, job id, description, *record values])
    targets: list[tuple[int, list[Any]]] = field(default_factory=list)


class Enqueuer:
    """Holds the registered script and the queue for one Redis connection."""

    def __init__(self, redis: Redis, retention: float):
        self.redis = redis
        self.retention = int(retention)
        self.queue = Queue(QUEUE_NAME, connection=redis)
        self.script = redis.register_script(_ENQUEUE)  # the edge runs it on a connection of its own
        self._requeue = redis.register_script(_REQUEUE)
        self._rq_hashes: dict[int, tuple[Any, ...]] = {}
        self._keys = [store.INDEX_KEY, self.queue.key, Queue.redis_queues_keys, metrics.key("webhooks_received"),
                      store.ACTIVE_KEY]
        self._failed_registry = FailedJobRegistry(queue=self.queue).key
        self.mirrors = MirrorKeys()

    def prepare(self, source: str, repo: str, delivery: str, matches: list[Match],
                targets: dict[str, TargetBase], trigger: str = "push") -> Delivery:
        """The script's arguments for one delivery: a job per match, unless it joins a waiting one.

        A reconcile passes a delivery key of its own (one per period) and records no delivery.
        """
        prepared = Delivery(delivery, store.delivery_key(source, delivery), _metric_field(source, "accepted"),
                            _metric_field(source, "duplicate"))
        created_at = store.now_iso()
        recorded_delivery = delivery if trigger == "push" else ""
        for match in matches:
            target = targets[match.target]
            job_id = os.urandom(16).hex()  # as unique as uuid4().hex, without building a UUID
            mirror = self.mirrors.key(match.target, target, repo)  # a templated target's: one per repository
            digest, refs = _ref_filter(_filter_key(match.refs))
            update = match.update or _NO_UPDATE
            values = [  # in JOB_FIELDS order
                job_id, "queued", source, repo, update.ref, update.before, update.after, recorded_delivery,
                match.target, target.provider, "0", created_at, trigger, refs, lane(source, repo, digest), mirror, "1"]
            description = f"{trigger} sync of {match.target} {repo} {update.ref}".strip()
            prepared.targets.append((_execution_timeout(target.request_timeout),
                                     [store.lanes_key(mirror), job_id, description, *values]))
        return prepared

    def commit(self, deliveries: list[Delivery]) -> list[Receipt]:
        """Store ``deliveries`` in one script call, in order; one receipt each."""
        keys, args = self.pack(deliveries)
        return self.receipts(deliveries, self.script(keys=keys, args=args))

    def pack(self, deliveries: list[Delivery]) -> tuple[list[Any], list[Any]]:
        """The script's keys and arguments for storing ``deliveries`` in one call, in order.

        Split from :meth:`commit` so the event-loop edge can send them on its own connection.
        """
        rq_hashes: dict[int, int] = {}
        rq_args: list[Any] = []
        body: list[Any] = []
        for prepared in deliveries:
            body += [prepared.key, prepared.metric_new, prepared.metric_seen, len(prepared.targets)]
            for timeout, (lanes, job_id, description, *values) in prepared.targets:
                if timeout not in rq_hashes:
                    rq_hashes[timeout] = len(rq_hashes) + 1
                    template = self._rq_hash(timeout)
                    rq_args += [len(template), *template]
                body += [lanes, job_id, rq_hashes[timeout], description, *values]
        stamp = now()
        return self._keys, [self.retention, f"{stamp.timestamp():.6f}", utcformat(stamp), store.job_key(""),
                            Job.redis_job_namespace_prefix, len(rq_hashes), *rq_args, *body]

    @staticmethod
    def receipts(deliveries: list[Delivery], replies: list[Any]) -> list[Receipt]:
        """The script's replies as one receipt per delivery (``zip`` refuses a short answer)."""
        receipts = []
        for prepared, (flag, created, *items) in zip(deliveries, replies, strict=True):
            text = [item.decode() for item in items]
            if flag == b"seen":
                seen = tuple(zip(text[0::3], text[1::3], text[2::3], strict=True))
                receipts.append(Receipt(prepared.delivery, text[0::3], True, 0, seen))
            else:
                receipts.append(Receipt(prepared.delivery, text, False, created))
        return receipts

    def enqueue(self, source: str, repo: str, delivery: str, matches: list[Match],
                targets: dict[str, TargetBase], trigger: str = "push") -> Receipt:
        """:meth:`prepare` and :meth:`commit` one delivery on its own."""
        return self.commit([self.prepare(source, repo, delivery, matches, targets, trigger)])[0]

    def requeue(self, job_id: str, request_timeout: float) -> str | None:
        """Run a failed job again (same id, ``trigger: retry``); returns the status it had if not failed."""
        fields = store.encode({"status": "queued", "remote": None, "errors": 0, "polls": 0, "trigger": "retry"})
        flat = [item for pair in fields.items() for item in pair]
        stamp = utcformat(now())
        rq_fields = [*self._rq_hash(_execution_timeout(request_timeout)),
                     "created_at", stamp, "enqueued_at", stamp, "description", f"retry of {job_id}"]
        keys = [store.job_key(job_id), Job.redis_job_namespace_prefix + job_id, self.queue.key, store.ACTIVE_KEY,
                self._failed_registry]
        result = self._requeue(keys=keys, args=[self.retention, job_id, len(flat), *flat, *rq_fields]).decode()
        return None if result == "requeued" else result

    def _rq_hash(self, timeout: int) -> tuple[Any, ...]:
        """RQ's own job hash for a sync job, flattened for HSET, without its timestamps and description.

        Built by RQ, so it is what ``Queue.enqueue`` would save; the scripts add ``created_at``,
        ``enqueued_at`` and ``description`` per job. Only the execution timeout differs between targets.
        """
        if timeout not in self._rq_hashes:
            job = Job.create(SYNC_FUNCTION, id="template", connection=self.redis, status=JobStatus.QUEUED,
                             timeout=timeout, result_ttl=RESULT_TTL, failure_ttl=self.retention,
                             retry=ABANDONED_RETRIES, on_failure=Callback(FAILURE_CALLBACK))
            job.origin = QUEUE_NAME
            self._rq_hashes[timeout] = tuple(item for name, value in job.to_dict().items()
                                             if value is not None and name not in _PER_JOB_RQ_FIELDS
                                             for item in (name, value))
        return self._rq_hashes[timeout]


_NO_UPDATE = RefUpdate("", "", "")
_PER_JOB_RQ_FIELDS = frozenset({"created_at", "enqueued_at", "description"})


def _execution_timeout(request_timeout: float) -> int:
    return int(request_timeout) + EXECUTION_MARGIN


@cache
def _metric_field(source: str, outcome: str) -> str:
    return metrics.field(source=source, outcome=outcome)


FilterKey = tuple[tuple[str, tuple[str, ...] | None], ...] | None


def _filter_key(refs: dict[str, list[str] | None] | None) -> FilterKey:
    """A route's ref filter as a hashable key, so the lane and its JSON are computed once per route."""
    if refs is None:
        return None
    return tuple((kind, None if globs is None else tuple(globs)) for kind, globs in sorted(refs.items()))


@cache
def _ref_filter(key: FilterKey) -> tuple[str, str]:
    """A route's ref filter as a short digest (for the lane) and as the record stores it (JSON)."""
    refs = None if key is None else {kind: None if globs is None else list(globs) for kind, globs in key}
    digest = hashlib.sha1(json.dumps(refs, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    return digest[:12], json.dumps(refs, separators=(",", ":"))


def lane(source: str, repo: str, ref_filter: str) -> str:
    """The lane of a push within its mirror: pushes coalesce only with pushes of the same source,
    repository and ref filter, so a job record never names one repository with another's commit.
    Repository names hold no ':' on any host, so the parts cannot run into each other."""
    return f"{source}:{repo}:{ref_filter}"
