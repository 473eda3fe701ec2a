"""Taking over from a dead worker in seconds: its started jobs, and its scheduler's lock.

RQ notices a job abandoned only when its entry in the StartedJobRegistry expires, the job's
execution limit plus 60 s after it began, and a killed scheduler's lock holds for 61 s after its
last refresh: a killed worker's sync then completed 84-98 s after a new worker started. syncbridge's
workers keep their RQ worker key alive with a short TTL from a thread of their own
(``workers.worker``), so the key outlives its process by seconds, and every worker's maintenance
pass (at start, then every few seconds) runs both checks below.

- :func:`expire_dead_executions`: a started job whose execution names a worker whose key is gone
  (or says it died) is expired in the StartedJobRegistry on the spot, and RQ's own cleanup, which
  runs right after in the same pass, handles it as abandoned: its failure callback, then its
  ``Retry`` (or failed once its retries are spent). A worker that is alive, however slow its
  provider call, keeps its key, so its job is never run twice. The killed execution is also
  removed from the rest of RQ's bookkeeping: RQ 3.0.0 leaves it in the job's execution registry,
  where reading it later (``Job.delete``, ``Job.cancel``, ``Job.get_executions``) raises
  ``ValueError: Execution <id> not found in Redis``.

  One kill needs more: RQ reschedules a job that returned ``rq.Retry`` in two writes, its status
  first, then (one transaction) the ScheduledJobRegistry and the end of the execution. Killed in
  between, the job says ``scheduled`` and no registry holds it: RQ's cleanup would skip it as
  not abandoned, and nothing would ever run it again (a follow-up waiting on its mirror every
  2 s was caught there in one run of three). Such a job is scheduled now instead.
- :func:`requeue_lost_jobs`: with several queues RQ pops a job with BLPOP, and a worker killed
  before it registers the execution (milliseconds later) takes the job with it: still ``queued``,
  in no queue and no registry, it would never run, and a later push would join it in its lane
  forever. When a worker is found dead (its key gone while RQ still lists it on the queue), every
  job the records say is queued (``syncbridge:active``, and the periodic tick) that RQ also says is
  queued but that is not in the queue is noted; those still so at the next pass, a second or more
  later (a live worker registers what it pops within milliseconds), go back to the queue's front.
- :func:`release_stale_scheduler_locks`: a lock its scheduler has not refreshed for
  ``STALE_SCHEDULER`` seconds (a live one refreshes it every second) is released, so a new
  worker's scheduler takes it now; scheduled polls and retries would otherwise wait out the lock.

A worker cut off from Redis for longer than its key's TTL (a network partition) looks dead too:
its job runs again elsewhere, as syncs are at-least-once anyway (docs/RELIABILITY.md).
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from rq import Queue
from rq.defaults import RQ_KEY_PREFIX
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, ExecutionRegistry
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.worker import BaseWorker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from bridge.store import ACTIVE_KEY, PREFIX, job_key

log = logging.getLogger("syncbridge.worker")
SCHEDULER_LOCK_TTL = 1 + 60  # what RQScheduler sets its locks to: its interval (1 s) + 60 s, refreshed each interval
STALE_SCHEDULER = 10  # seconds without a refresh after which a scheduler's lock is taken for a dead one's

# KEYS[1] a queue's StartedJobRegistry, KEYS[2] its ScheduledJobRegistry; ARGV: the key prefix of RQ's
# executions, of a job's execution registry, of a worker, the suffix of a worker's executions set, and the
# key prefix of RQ's jobs. Entries are "<job id>:<execution id>".
_EXPIRE_DEAD = """
local dead = {}
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf')) do  -- score 0: handled already
  local job, execution = string.match(entry, '^(.+):([^:]+)$')
  if execution then
    local key = ARGV[1] .. entry
    local worker = redis.call('HGET', key, 'worker_name')
    local worker_key = worker and (ARGV[3] .. worker)
    if not worker or redis.call('EXISTS', worker_key) == 0 or redis.call('HEXISTS', worker_key, 'death') == 1 then
      if redis.call('HGET', ARGV[5] .. job, 'status') == 'scheduled' and not redis.call('ZSCORE', KEYS[2], job) then
        -- Killed between RQ's two writes of a returned Retry: the status says scheduled, the
        -- ScheduledJobRegistry never heard of it. Finish RQ's write: the job asked to run again.
        redis.call('ZADD', KEYS[2], redis.call('TIME')[1], job)
        redis.call('ZREM', KEYS[1], entry)
      else
        redis.call('ZADD', KEYS[1], 0, entry)  -- expired: RQ's cleanup takes it as abandoned
      end
      redis.call('DEL', key)
      redis.call('ZREM', ARGV[2] .. job, execution)
      if worker then redis.call('SREM', worker_key .. ARGV[4], entry) end
      table.insert(dead, entry)
    end
  end
end
return dead
"""

# KEYS[1] the queue, KEYS[2] the set of its workers (RQ's), KEYS[3] the records of jobs not ended
# (syncbridge:active), KEYS[4] the jobs noted as lost (a sorted set by when); ARGV[1] the key prefix of
# records, ARGV[2] of RQ's jobs, ARGV[3] now (s), ARGV[4] how long a job must stay lost, then ids of jobs
# without a record to check too (the periodic tick). Returns the ids put back on the queue.
_REQUEUE_LOST = """
local dead = false
for _, worker_key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', worker_key) == 0 then dead = true end
end
if not dead and redis.call('EXISTS', KEYS[4]) == 0 then return {} end
local in_queue = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do in_queue[id] = true end
local function lost(id)
  return redis.call('HGET', ARGV[2] .. id, 'status') == 'queued' and not in_queue[id]
end
local requeued = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))) do
  redis.call('ZREM', KEYS[4], id)
  if lost(id) then
    redis.call('LPUSH', KEYS[1], id)
    table.insert(requeued, id)
  end
end
if dead then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('HGET', ARGV[1] .. id, 'status') == 'queued' and lost(id) then
      redis.call('ZADD', KEYS[4], 'NX', ARGV[3], id)
    end
  end
  for i = 5, #ARGV do
    if lost(ARGV[i]) then redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[i]) end
  end
  redis.call('EXPIRE', KEYS[4], 300)
end
return requeued
"""
LOST_KEY = f"{PREFIX}:lost"  # jobs seen popped by a dead worker, by when: requeued if still lost a pass later
LOST_FOR = 1  # seconds a job must stay lost before it is requeued

# KEYS: scheduler locks; ARGV[1] the TTL below which a lock is stale. Returns the holders released.
_RELEASE_STALE = """
local released = {}
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  local ttl = redis.call('TTL', key)
  if holder and ttl >= 0 and ttl < tonumber(ARGV[1]) then
    redis.call('DEL', key)
    table.insert(released, holder)
  end
end
return released
"""


def expire_dead_executions(queue: Queue) -> list[str]:
    """Expire, in ``queue``'s StartedJobRegistry, every execution whose worker is gone; their job ids.

    RQ's registry cleanup (``clean_registries``, the same maintenance pass) then requeues them.
    """
    dead = queue.connection.register_script(_EXPIRE_DEAD)(
        keys=[queue.started_job_registry.key, queue.scheduled_job_registry.key],
        args=[f"{RQ_KEY_PREFIX}:execution:", ExecutionRegistry.key_template.format(""),  # as Execution.key
              BaseWorker.redis_worker_namespace_prefix, WORKER_EXECUTIONS_KEY_TEMPLATE.partition("{0}")[2],
              Job.redis_job_namespace_prefix])
    job_ids = [entry.decode().rpartition(":")[0] for entry in dead]
    if job_ids:
        log.warning("queue %s: the worker running %s is gone; requeueing at once", queue.name, ", ".join(job_ids))
    return job_ids


def requeue_lost_jobs(queue: Queue, also: tuple[str, ...] = ()) -> list[str]:
    """Put back on ``queue`` the jobs a dead worker popped but never started; their ids.

    ``also``: ids of jobs with no record (the periodic tick) to check as well.
    """
    requeued = [job_id.decode() for job_id in queue.connection.register_script(_REQUEUE_LOST)(
        keys=[queue.key, WORKERS_BY_QUEUE_KEY % queue.name, ACTIVE_KEY, LOST_KEY],
        args=[job_key(""), Job.redis_job_namespace_prefix, f"{time.time():.3f}", LOST_FOR, *also])]
    if requeued:
        log.warning("queue %s: %s popped by a worker that died before starting it; queued again",
                    queue.name, ", ".join(requeued))
    return requeued


def release_stale_scheduler_locks(redis: Redis, queue_names: list[str]) -> list[str]:
    """Release the scheduler locks of ``queue_names`` that no scheduler refreshed lately; their holders."""
    keys = [RQScheduler.get_locking_key(name) for name in queue_names]
    released = [holder.decode() for holder in redis.register_script(_RELEASE_STALE)(
        keys=keys, args=[SCHEDULER_LOCK_TTL - STALE_SCHEDULER])]
    if released:
        log.warning("released the scheduler lock of %s: not refreshed for %d s (its worker is gone)",
                    ", ".join(sorted(set(released))), STALE_SCHEDULER)
    return released
