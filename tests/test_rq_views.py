"""What RQ's own tools (``rq info``, rq-dashboard's registries) say about syncs, with real processes.

A sync returns ``rq.Retry`` for every poll; those executions are neither failed nor finished jobs.
A completed sync is in RQ's finished registry, a failed one in its failed registry with the
reason, and both of syncbridge's queues are listed even before anything was sent to them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bridge.embedded import EmbeddedRedis
from bridge.queueing import QUEUE_NAME
from tests.conftest import github_headers, mesa_config
from tests.test_end_to_end import running_bridge
from tests.test_hooks import push_body
from tests.test_lanes import API_TOKEN, AUTH, wait_until_done
from tests.test_worker_mesa import settings


@pytest.fixture
def bridge(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> Iterator[str]:
    config = tmp_path / "syncbridge.yml"
    config.write_text(mesa_config(sandbox.url).replace("\n        ", "\n"))
    with running_bridge(config, redis_server.url, SYNCBRIDGE_API_TOKEN=API_TOKEN) as url:
        yield url


def push(url: str, delivery: str) -> str:
    body = push_body(after=f"{len(delivery):040x}")
    response = requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, delivery=delivery),
                             timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["jobs"][0]["url"]


def settled(check: Callable[[], bool], timeout: float = 10) -> None:
    """Wait (a generous bound) until ``check`` holds: RQ files an execution just after it returns."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "RQ never filed the execution"
        time.sleep(0.05)


def rq_info(redis_server: EmbeddedRedis) -> str:
    """``rq info`` as an operator runs it, raw numbers."""
    command = [str(Path(sys.executable).parent / "rq"), "info", "--raw", "--url", redis_server.url]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


def test_rq_counts_each_sync_once_lists_it_where_it_ended_and_shows_both_queues(
        bridge: str, sandbox: Any, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings(sandbox, "mesa", polls=3)  # three polls: three returned Retry objects before the end
    completed = wait_until_done(push(bridge, "rq-ok"), timeout=30)
    settings(sandbox, "mesa", polls=2, outcome="failed", error="the mirror refused the sync")
    failed = wait_until_done(push(bridge, "rq-failing"), timeout=30)
    assert (completed["status"], failed["status"]) == ("completed", "failed")

    queue = Queue(QUEUE_NAME, connection=redis)
    # the record ends first, then RQ files the execution that ended it
    settled(lambda: FinishedJobRegistry(queue=queue).get_job_ids() == [completed["id"]])
    settled(lambda: FailedJobRegistry(queue=queue).get_job_ids() == [failed["id"]])
    assert "the mirror refused the sync" in (queue.fetch_job(failed["id"]).latest_result().exc_string or "")

    info = rq_info(redis_server)
    assert re.search(r"^queue syncbridge 0, 0 executing, 1 finished, 1 failed$", info, re.M), info
    assert re.search(r"^queue syncbridge-notify 0, ", info, re.M), info  # listed before its first job
    counts = [tuple(map(int, found)) for found in re.findall(r"jobs: (\d+) finished, (\d+) failed", info)]
    assert len(counts) == 2 and tuple(map(sum, zip(*counts, strict=True))) == (1, 1), info  # not one per poll

    settings(sandbox, "mesa", polls=1, outcome="completed")
    retried = requests.post(f"{bridge}/jobs/{failed['id']}/retry", headers=AUTH, timeout=5)
    assert retried.status_code == 202, retried.text
    assert wait_until_done(f"{bridge}/jobs/{failed['id']}", timeout=30)["status"] == "completed"
    assert FailedJobRegistry(queue=queue).get_job_ids() == []  # retried: no longer listed as failed
    settled(lambda: sorted(FinishedJobRegistry(queue=queue).get_job_ids()) == sorted([completed["id"], failed["id"]]))
