"""Recovery from a killed worker in seconds, for the job it ran and the follow-up waiting behind it.

The scenario of issue 16, with real processes: Redis restarted under a running web and worker; a
push; a second push to the same target that becomes the waiting follow-up in the same lane; the
whole worker (pool, its worker processes, the scheduler) SIGKILLed during the first provider call,
as a Heroku dyno restart past its 30 s or an OOM kill would; then a new ``syncbridge worker``. Both
syncs must complete within 30 s of the new worker starting, one after the other (a mirror runs one
sync at a time), and RQ's bookkeeping must hold no trace of the killed execution (RQ 3.0.0 raised
``ValueError: Execution <id> not found in Redis`` on such a trace when the recovered job ended).

A worker that is alive but slow is never taken for dead: its provider call outlasts the
dead-worker check many times over and is made exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import clean_registries
from rq.scheduler import RQScheduler
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from bridge.config import Config
from bridge.embedded import EmbeddedRedis
from bridge.events import RefUpdate
from bridge.queueing import QUEUE_NAME, Enqueuer
from bridge.routing import Match
from tests.conftest import environ_for, mesa_config, sandbox_calls
from tests.helpers import until
from tests.test_reliability import (
    end,
    epoch,
    group_alive,
    job_record,
    post_push,
    record_numbers,
    sandbox_settings,
    spawn,
    wait_done,
    web_process,
    worker_process,
    write_config,
)
from workers.recovery import (
    LOST_FOR,
    SCHEDULER_LOCK_TTL,
    STALE_SCHEDULER,
    expire_dead_executions,
    release_stale_scheduler_locks,
    requeue_lost_jobs,
)

RECOVERY_BOUND = 30.0  # seconds from the new worker's start to both syncs completed (issue 16)


def rq_traces(redis: Redis, job_id: str) -> list[str]:
    """What RQ still holds of the job's executions; reading them raised ValueError in RQ 3.0.0."""
    return Job.fetch(job_id, connection=redis).execution_registry.get_execution_ids()


@pytest.mark.parametrize("run", range(3))
def test_a_killed_worker_pool_is_recovered_within_30_s_with_the_follow_up_behind_it(
        tmp_path: Path, sandbox: Any, request: pytest.FixtureRequest, run: int) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    redis = Redis.from_url(server.url)
    config = write_config(tmp_path, mesa_config(sandbox.url, request_timeout=5))
    env = environ_for(server.url, config, SYNCBRIDGE_LOG_LEVEL="INFO")
    try:
        with web_process(config, server.url, tmp_path / "web.log") as (url, _):
            first = spawn(["worker", "--processes", "2"], env, tmp_path / "worker-1.log")
            try:
                until(lambda: redis.smembers("rq:workers"), 30, what="the first worker registered")
                server.kill()  # Redis restarted under the running web and worker
                server.start()
                until(lambda: post_push(url, f"warm-{run}").status_code == 202, 30, interval=0.2,
                      what="the web answering 202 again")
                warm = post_push(url, f"warm-{run}").json()["jobs"][0]["id"]
                wait_done(url, warm, timeout=60)  # the first worker works again after the restart

                sandbox_settings(sandbox, latency=3)  # the kill lands inside the next provider call
                calls_before = len(sandbox_calls(sandbox, "mesa"))
                first_job = post_push(url, f"push-1-{run}", after="1" * 40).json()["jobs"][0]["id"]
                until(lambda: len(sandbox_calls(sandbox, "mesa")) > calls_before, 30,
                      what="the trigger call reaching the provider")
                answer = post_push(url, f"push-2-{run}", after="2" * 40)
                follow_up = answer.json()["jobs"][0]["id"]
                assert follow_up != first_job  # the first sync has started: the push queues a follow-up
                assert job_record(url, follow_up)["status"] == "queued"
                os.killpg(first.pid, signal.SIGKILL)
            finally:
                end(first)
            until(lambda: not group_alive(first.pid), 10, what="every process of the killed worker gone")
            assert job_record(url, first_job)["status"] == "in_progress"

            sandbox_settings(sandbox, latency=0)
            started = time.time()
            with worker_process(config, server.url, tmp_path / "worker-2.log"):
                records = {job_id: wait_done(url, job_id, timeout=90) for job_id in (first_job, follow_up)}
                traces = {job_id: rq_traces(redis, job_id) for job_id in records}
        log = (tmp_path / "worker-2.log").read_text()
    finally:
        redis.close()
        server.stop()

    done = {job_id: epoch(record["finished_at"]) - started for job_id, record in records.items()}
    record_numbers(request, f"recovery_{run}", first_job_seconds=round(done[first_job], 1),
                   follow_up_seconds=round(done[follow_up], 1))
    assert all(record["status"] == "completed" for record in records.values()), records
    assert records[follow_up]["after"] == "2" * 40
    # One sync of the mirror at a time: the follow-up started after the recovered sync ended.
    assert epoch(records[follow_up]["started_at"]) >= epoch(records[first_job]["finished_at"])
    assert max(done.values()) <= RECOVERY_BOUND, done
    assert traces == {first_job: [], follow_up: []}
    assert "ValueError" not in log and "Traceback" not in log, log[-3000:]


def test_a_slow_provider_call_is_never_taken_for_a_dead_worker(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    """A provider call of 15 s, far past the worker key's TTL and many dead-worker checks by the
    pool's other, idle process: the call is made once, and the sync completes."""
    config = write_config(tmp_path, mesa_config(sandbox.url, request_timeout=25))
    sandbox_settings(sandbox, latency=15, polls=0)
    with web_process(config, redis_server.url, tmp_path / "web.log") as (url, _), \
            worker_process(config, redis_server.url, tmp_path / "worker.log"):
        job_id = post_push(url, "slow-1").json()["jobs"][0]["id"]
        record = wait_done(url, job_id, timeout=60)
    triggers = [call for call in sandbox_calls(sandbox, "mesa") if call["method"] == "POST"]
    assert record["status"] == "completed", record
    assert len(triggers) == 1 and record["attempts"] == 1


# -- the dead-worker check on RQ's own bookkeeping, one state at a time ----------------------------------------


def started_by(redis: Redis, worker_name: str, status: JobStatus) -> tuple[Queue, Job]:
    """A job RQ has started on ``worker_name`` (its execution registered as RQ registers it), now ``status``."""
    queue = Queue(QUEUE_NAME, connection=redis)
    job = queue.enqueue("workers.jobs.sync", retry=Retry(max=3, interval=[5]))
    queue.remove(job)
    with redis.pipeline() as pipeline:
        Execution.create(job, ttl=90, pipeline=pipeline, worker_name=worker_name)
        job.set_status(status, pipeline=pipeline)
        pipeline.execute()
    return queue, job


def test_a_job_of_a_worker_whose_key_is_gone_is_requeued_and_rq_keeps_no_trace_of_its_execution(redis: Redis) -> None:
    queue, job = started_by(redis, "gone-worker", JobStatus.STARTED)
    assert expire_dead_executions(queue) == [job.id]
    clean_registries(queue)  # RQ's own cleanup, as in the same maintenance pass
    assert job.id in queue.scheduled_job_registry  # RQ's abandoned-job Retry: again in 5 s
    assert job.id not in queue.started_job_registry.get_job_ids(cleanup=False)
    assert job.get_executions() == []  # RQ 3.0.0 raised ValueError reading the killed execution here
    job.delete()


def test_a_job_killed_between_rqs_two_writes_of_a_retry_is_scheduled_again(redis: Redis) -> None:
    """RQ writes a returned Retry's status first, then the ScheduledJobRegistry: a kill in between left
    the job 'scheduled' in no registry, and RQ's cleanup skips a job that is not 'started'."""
    queue, job = started_by(redis, "gone-worker", JobStatus.SCHEDULED)
    assert expire_dead_executions(queue) == [job.id]
    clean_registries(queue)
    assert job.id in queue.scheduled_job_registry
    assert job.get_status() == JobStatus.SCHEDULED and job.get_executions() == []


def test_the_job_of_a_live_worker_is_left_alone(redis: Redis) -> None:
    queue, job = started_by(redis, "live-worker", JobStatus.STARTED)
    redis.hset(f"{Worker.redis_worker_namespace_prefix}live-worker", "last_heartbeat", "now")
    assert expire_dead_executions(queue) == []
    clean_registries(queue)
    assert job.id in queue.started_job_registry.get_job_ids(cleanup=False)
    assert job.get_status() == JobStatus.STARTED and len(job.get_executions()) == 1


def test_a_dead_schedulers_lock_is_released_and_a_live_ones_kept(redis: Redis) -> None:
    scheduler = RQScheduler([QUEUE_NAME], connection=redis)
    assert scheduler.acquire_locks() == {QUEUE_NAME}  # RQ's own lock: the TTL the staleness is read from
    assert SCHEDULER_LOCK_TTL - 1 <= redis.ttl(RQScheduler.get_locking_key(QUEUE_NAME)) <= SCHEDULER_LOCK_TTL
    assert release_stale_scheduler_locks(redis, [QUEUE_NAME]) == []  # just refreshed: alive
    dead, live = (RQScheduler.get_locking_key(name) for name in ("dead-queue", "live-queue"))
    redis.set(dead, "killed-scheduler", ex=SCHEDULER_LOCK_TTL - STALE_SCHEDULER - 1)  # not refreshed for 11 s
    redis.set(live, "running-scheduler", ex=SCHEDULER_LOCK_TTL - 1)  # refreshed a second ago
    assert release_stale_scheduler_locks(redis, ["dead-queue", "live-queue"]) == ["killed-scheduler"]
    assert not redis.exists(dead) and redis.get(live) == b"running-scheduler"


def popped(redis: Redis, write_config: Callable[[str], Config], delivery: str) -> tuple[Queue, str]:
    """A push's job, taken off the queue as a worker's BLPOP takes it, by a worker that then died
    (RQ still lists it on the queue; its key is gone)."""
    config = write_config(mesa_config("http://127.0.0.1:9"))
    update = RefUpdate("refs/heads/main", "0" * 40, "1" * 40)
    job_id = Enqueuer(redis, config.retention).enqueue(
        "github", "acme/widgets", delivery, [Match("widgets-mesa", None, update)], config.targets).job_ids[0]
    queue = Queue(QUEUE_NAME, connection=redis)
    assert redis.lpop(queue.key).decode() == job_id
    redis.sadd(WORKERS_BY_QUEUE_KEY % QUEUE_NAME, f"{Worker.redis_worker_namespace_prefix}killed")
    return queue, job_id


def test_a_job_a_dead_worker_popped_but_never_started_is_queued_again(
        redis: Redis, write_config: Callable[[str], Config]) -> None:
    queue, job_id = popped(redis, write_config, "lost-1")
    assert requeue_lost_jobs(queue) == []  # noted only: a live worker starts what it pops within milliseconds
    time.sleep(LOST_FOR + 0.1)
    assert requeue_lost_jobs(queue) == [job_id]
    assert queue.job_ids == [job_id]
    assert requeue_lost_jobs(queue) == []  # once


def test_a_job_popped_by_a_live_worker_is_not_queued_twice(redis: Redis, write_config: Callable[[str], Config]) -> None:
    queue, job_id = popped(redis, write_config, "live-1")
    assert requeue_lost_jobs(queue) == []
    Job.fetch(job_id, connection=redis).set_status(JobStatus.STARTED)  # a live worker started it meanwhile
    time.sleep(LOST_FOR + 0.1)
    assert requeue_lost_jobs(queue) == [] and queue.job_ids == []
