"""Dedupe, coalesce and enqueue a push in one atomic Redis round trip.

One Lua script, per delivery:

1. a delivery id seen before returns the jobs it made (a redelivery does no new work);
2. per target, a job still *waiting* in the queue for the same target and ref filter absorbs the
   push (its ref and sha move to the newest push) instead of queueing a second sync; once a
   worker starts a job the slot is freed (``Store.start``), so a push during a running sync
   queues exactly one follow-up, which starts after that push arrived and so covers it;
3. otherwise it writes the job record and RQ's own job hash and pushes the id on RQ's queue.

The RQ job is built by RQ (``Job.create(...).to_dict()``, as RQ's own unique-enqueue script
does), so a worker runs it like any other; the function is named by its dotted path because the
web side never imports ``workers``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now

from bridge import metrics, store
from bridge.config import TargetBase
from bridge.events import RefUpdate
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

_ENQUEUE = """
-- KEYS[1] delivery key, KEYS[2] jobs index, KEYS[3] RQ queue key, KEYS[4] RQ queues set,
-- KEYS[5] the webhooks_received metric hash
-- ARGV: retention, now (epoch s), job key prefix, RQ job key prefix, metric field if new,
--   metric field if seen before, then per target:
--   waiting key, job id, n, n job fields (k v ...), m, m RQ job fields (k v ...)
local retention = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[5], ARGV[6], 1)
  local ids = redis.call('LRANGE', KEYS[1], 0, -1)
  table.insert(ids, 1, 'seen')
  return ids
end
redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
local result = {'new'}
local i = 7
while i <= #ARGV do
  local waiting, id = ARGV[i], ARGV[i + 1]
  local njob = tonumber(ARGV[i + 2])
  local job_fields = {unpack(ARGV, i + 3, i + 2 + njob)}
  i = i + 3 + njob
  local nrq = tonumber(ARGV[i])
  local rq_fields = {unpack(ARGV, i + 1, i + nrq)}
  i = i + 1 + nrq
  local current = redis.call('GET', waiting)
  local joined = false
  if current then
    local key = ARGV[3] .. current
    if redis.call('HGET', key, 'status') == 'queued' then
      -- The waiting sync has not started: it will cover this push too. Show the newest push
      -- (a reconcile, which has no ref, leaves the job as it is).
      if job_fields[2 * 5] ~= '' then
        redis.call('HSET', key, 'ref', job_fields[2 * 5], 'before', job_fields[2 * 6],
                   'after', job_fields[2 * 7])
      end
      redis.call('HINCRBY', key, 'pushes', 1)
      table.insert(result, current)
      joined = true
    end
  end
  if not joined then
    local key = ARGV[3] .. id
    redis.call('HSET', key, unpack(job_fields))
    redis.call('EXPIRE', key, retention)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HSET', ARGV[4] .. id, unpack(rq_fields))
    redis.call('RPUSH', KEYS[3], id)
    redis.call('SET', waiting, id, 'EX', retention)
    table.insert(result, id)
  end
end
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('RPUSH', KEYS[1], unpack(result, 2))
redis.call('EXPIRE', KEYS[1], retention)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - retention)
return result
"""
_REQUEUE = """
-- KEYS[1] job record, KEYS[2] RQ job hash, KEYS[3] RQ queue; ARGV[1] retention, ARGV[2] job id,
-- ARGV[3] n, n record fields (k v ...), then RQ job fields (k v ...)
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' then return status or '' end
local n = tonumber(ARGV[3])
redis.call('HDEL', KEYS[1], 'started_at', 'finished_at', 'error', 'last_error')
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4 + n))
redis.call('RPUSH', KEYS[3], ARGV[2])
return 'requeued'
"""
# Positions of ref, before, after in the field list below (1-based pairs), used by the script.
_JOB_FIELD_ORDER = ("id", "status", "source", "repo", "ref", "before", "after", "delivery", "target",
                    "provider", "attempts", "created_at", "trigger", "refs", "lane", "pushes")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the receiver answers: the delivery, its job ids, and whether it was seen before."""

    delivery: str
    job_ids: list[str]
    seen_before: bool


class Enqueuer:
    """Holds the registered script and the queue for one Redis connection."""

    def __init__(self, redis: Redis, retention: float):
        self.redis = redis
        self.retention = int(retention)
        self.queue = Queue(QUEUE_NAME, connection=redis)
        self._script = redis.register_script(_ENQUEUE)
        self._requeue = redis.register_script(_REQUEUE)

    def enqueue(self, source: str, repo: str, delivery: str, matches: list[Match],
                targets: dict[str, TargetBase], trigger: str = "push") -> Receipt:
        """Store one job per match (or join a waiting one) atomically, keyed by ``delivery``.

        A reconcile passes a delivery key of its own (one per period) and records no delivery.
        """
        args: list[Any] = [self.retention, f"{now().timestamp():.6f}", store.job_key(""),
                           Job.redis_job_namespace_prefix, metrics.field(source=source, outcome="accepted"),
                           metrics.field(source=source, outcome="duplicate")]
        created_at = store.now_iso()
        for match in matches:
            job_id = uuid.uuid4().hex
            lane = _lane(match.target, match.refs)
            waiting = store.waiting_key(lane)
            update = match.update or RefUpdate("", "", "")
            fields = store.encode({
                "id": job_id, "status": "queued", "source": source, "repo": repo,
                "ref": update.ref, "before": update.before, "after": update.after,
                "delivery": delivery if trigger == "push" else None, "target": match.target,
                "provider": targets[match.target].provider, "attempts": 0, "created_at": created_at,
                "trigger": trigger, "refs": match.refs, "lane": lane, "pushes": 1,
            })
            job_fields = [item for name in _JOB_FIELD_ORDER for item in (name, fields[name])]
            rq_fields = self._rq_fields(job_id, f"{trigger} sync of {match.target} {repo} {update.ref}".strip(),
                                        targets[match.target].request_timeout)
            args += [waiting, job_id, len(job_fields), *job_fields, len(rq_fields), *rq_fields]
        keys = [store.delivery_key(delivery), store.INDEX_KEY, self.queue.key, Queue.redis_queues_keys,
                metrics.key("webhooks_received")]
        reply = self._script(keys=keys, args=args)
        flag, *ids = (item.decode() for item in reply)
        return Receipt(delivery=delivery, job_ids=ids, seen_before=flag == "seen")

    def requeue(self, job_id: str, request_timeout: float) -> str | None:
        """Run a failed job again (same id, ``trigger: retry``); returns the status it had if not failed."""
        fields = store.encode({"status": "queued", "remote": None, "errors": 0, "polls": 0, "trigger": "retry"})
        flat = [item for pair in fields.items() for item in pair]
        rq_fields = self._rq_fields(job_id, f"retry of {job_id}", request_timeout)
        keys = [store.job_key(job_id), Job.redis_job_namespace_prefix + job_id, self.queue.key]
        result = self._requeue(keys=keys, args=[self.retention, job_id, len(flat), *flat, *rq_fields]).decode()
        return None if result == "requeued" else result

    def _rq_fields(self, job_id: str, description: str, request_timeout: float) -> list[Any]:
        """RQ's own job hash for ``job_id``, flattened for HSET, exactly as RQ would save it."""
        job = Job.create(SYNC_FUNCTION, args=[job_id], id=job_id, connection=self.redis,
                         status=JobStatus.QUEUED, timeout=int(request_timeout) + EXECUTION_MARGIN, result_ttl=0,
                         failure_ttl=self.retention, retry=ABANDONED_RETRIES, description=description,
                         on_failure=Callback(FAILURE_CALLBACK))
        job.origin = QUEUE_NAME
        job.enqueued_at = now()
        return [item for name, value in job.to_dict().items() if value is not None
                for item in (name, value)]


def _lane(target: str, refs: dict[str, list[str]] | None) -> str:
    """Pushes coalesce per lane, a target and ref filter: those are all the provider call depends on."""
    digest = hashlib.sha1(json.dumps(refs, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    return f"{target}:{digest[:12]}"
