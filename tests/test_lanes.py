"""Lanes through real processes: a job never mixes repositories, and lanes heal themselves.

Several repositories routed to one target (a repo glob) coalesce per repository: a waiting job is
joined only by pushes of its own source and repository, so every record names the repository,
delivery and commit of a push it really covers, while the target still runs one sync at a time.
A job deleted with RQ's own tools never captures later pushes, and ends failed with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from rq.job import Job

from bridge.embedded import EmbeddedRedis, free_port
from tests.conftest import environ_for, github_headers, mesa_config
from tests.test_end_to_end import running_bridge, stop, wait_for
from tests.test_hooks import push_body
from tests.test_worker_mesa import settings

REPOS = [f"acme/repo-{n}" for n in range(5)]
PUSHES_PER_REPO = 12
API_TOKEN = "lanes-api-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def config(tmp_path: Path, sandbox: Any) -> Path:
    """Every ``acme/*`` repository routed to one Mesa target."""
    path = tmp_path / "syncbridge.yml"
    path.write_text(mesa_config(sandbox.url).replace("repo: acme/widgets\n", 'repo: "acme/*"\n')
                    .replace("\n        ", "\n"))
    return path


@pytest.fixture
def bridge(config: Path, redis_server: EmbeddedRedis, redis: Redis) -> Iterator[str]:
    with running_bridge(config, redis_server.url, SYNCBRIDGE_API_TOKEN=API_TOKEN) as url:
        yield url


@contextmanager
def process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[Any]]:
    """``syncbridge <args>`` as a real process, stopped (SIGTERM, as a deploy does) at the end."""
    child = subprocess.Popen([sys.executable, "-m", "bridge", *args], env=env)
    try:
        yield child
    finally:
        stop(child)


def sha(repo: int, push: int) -> str:
    """A commit id that says which repository and which push it came from."""
    return f"{repo:02x}{push:038x}"


def get(url: str, **params: str) -> Any:
    response = requests.get(url, params=params, headers=AUTH, timeout=5)
    response.raise_for_status()
    return response.json()


def wait_until_done(url: str, timeout: float) -> dict[str, Any]:
    """Poll a job's status route until it ends; the last record seen."""
    deadline = time.monotonic() + timeout
    while (record := get(url))["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    return record


def send(url: str, repo: int, push: int) -> dict[str, Any]:
    body = push_body(repo=REPOS[repo], after=sha(repo, push))
    response = requests.post(f"{url}/hooks/github", data=body, timeout=10,
                             headers=github_headers(body, delivery=f"r{repo}-p{push}"))
    assert response.status_code == 202, response.text
    return response.json()["jobs"][0]


def test_a_burst_from_several_repositories_to_one_target_never_mixes_them(bridge: str, sandbox: Any) -> None:
    settings(sandbox, "mesa", polls=1)
    burst = [(repo, push) for push in range(PUSHES_PER_REPO - 1) for repo in range(len(REPOS))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        summaries = list(pool.map(lambda pair: send(bridge, *pair), burst))
    newest = [send(bridge, repo, PUSHES_PER_REPO - 1) for repo in range(len(REPOS))]
    records = {job["id"]: wait_until_done(job["url"], timeout=90) for job in [*summaries, *newest]}

    for (repo, push), summary in zip([*burst, *((r, PUSHES_PER_REPO - 1) for r in range(len(REPOS)))],
                                     [*summaries, *newest], strict=True):
        record = records[summary["id"]]
        # the job this push landed in is a job of this push's repository, showing one of its commits
        assert record["repo"] == REPOS[repo], (push, record)
        assert record["after"][:2] == f"{repo:02x}" and record["delivery"].startswith(f"r{repo}-"), record
    for record in records.values():  # the commit and delivery a record shows belong to one push
        assert record["delivery"] == f"r{int(record['after'][:2], 16)}-p{int(record['after'][2:], 16)}"
        assert record["status"] == "completed", record
    for repo, summary in enumerate(newest):  # each repository's newest push is covered
        assert records[summary["id"]]["after"] == sha(repo, PUSHES_PER_REPO - 1)
    delivery = get(f"{bridge}/deliveries/r3-p5")
    assert [job["repo"] for job in delivery["jobs"]] == [REPOS[3]]
    assert len(records) <= 2 * len(REPOS)  # still coalesced: at most two syncs per repository
    # the target still runs one sync at a time
    spans = sorted((record["started_at"], record["finished_at"]) for record in records.values())
    for (_, finished), (started, _) in pairwise(spans):
        assert started >= finished, spans


def test_a_job_deleted_with_rqs_tools_frees_its_lane_ends_failed_and_can_be_retried(
        config: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    env = environ_for(redis_server.url, config, SYNCBRIDGE_LOG_LEVEL="WARNING", SYNCBRIDGE_API_TOKEN=API_TOKEN,
                      SYNCBRIDGE_TICK_SECONDS="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(env, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"):
        wait_for(f"{url}/readyz")
        settings(sandbox, "mesa", polls=10_000)  # the first sync runs until its RQ job is deleted
        with process(env, "worker", "--processes", "1"):
            running = send(url, 0, 0)
            deadline = time.monotonic() + 20
            while get(running["url"])["status"] != "in_progress":
                assert time.monotonic() < deadline, "the first sync never started"
                time.sleep(0.1)
        # no worker now, so nothing runs while RQ's tools delete jobs (as rq-dashboard's "delete" does)
        waiting = send(url, 0, 1)  # the mirror is busy: this one waits in the lane
        assert waiting["id"] != running["id"]
        Job.fetch(waiting["id"], connection=redis).delete()
        Job.fetch(running["id"], connection=redis).delete()  # the running sync, between two polls
        follow_up = send(url, 0, 2)
        assert follow_up["id"] != waiting["id"], "a push joined a job that will never run"

        settings(sandbox, "mesa", polls=1)
        with process(env, "worker", "--processes", "1"):
            # the follow-up does not wait out a running slot that nobody holds any more
            assert wait_until_done(follow_up["url"], timeout=30)["status"] == "completed"
            for orphan in (waiting, running):  # the periodic check ends both, saying why
                record = wait_until_done(orphan["url"], timeout=30)
                assert record["status"] == "failed", record
                assert "RQ job was deleted outside syncbridge" in record["error"]
            retried = requests.post(f"{waiting['url']}/retry", headers=AUTH, timeout=5)
            assert retried.status_code == 202, retried.text
            record = wait_until_done(waiting["url"], timeout=30)
            assert record["status"] == "completed" and record["trigger"] == "retry", record
