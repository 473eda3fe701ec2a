"""Coalescing: one waiting sync per lane, one follow-up during a running sync, the newest commit
always covered, and bursts collapsed into at most two provider syncs per target."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from redis import Redis

from bridge.app import create_app
from tests.conftest import github_headers, mesa_config, sandbox_calls
from tests.driver import drive
from tests.test_end_to_end import bridge_processes  # noqa: F401  (fixture)
from tests.test_hooks import push_body
from tests.test_worker_mesa import settings


def post(client, delivery: str, after: str) -> dict[str, Any]:
    body = push_body(after=after)
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
    assert response.status_code == 202
    return response.get_json()["jobs"][0]


def test_pushes_join_the_waiting_job(write_config, redis: Redis, sandbox: Any) -> None:
    client = create_app(write_config(mesa_config(sandbox.url)), redis).test_client()
    first = post(client, "c-1", "1" * 40)
    second = post(client, "c-2", "2" * 40)
    assert second["id"] == first["id"]
    assert client.get("/deliveries/c-2").get_json()["jobs"][0]["id"] == first["id"]
    drive(redis)
    record = client.get(f"/jobs/{first['id']}").get_json()
    assert record["status"] == "completed" and record["after"] == "2" * 40
    assert [c["method"] for c in sandbox_calls(sandbox, "mesa")].count("POST") == 1


def test_a_push_during_a_running_sync_queues_one_follow_up_that_waits_for_it(
        write_config, redis: Redis, sandbox: Any) -> None:
    client = create_app(write_config(mesa_config(sandbox.url)), redis).test_client()
    settings(sandbox, "mesa", polls=3)
    running = post(client, "r-1", "1" * 40)
    drive(redis, max_rounds=1, until_idle=False)  # triggered, now polling
    assert client.get(f"/jobs/{running['id']}").get_json()["status"] == "in_progress"
    follow_up = post(client, "r-2", "2" * 40)
    joined = post(client, "r-3", "3" * 40)
    assert follow_up["id"] != running["id"] and joined["id"] == follow_up["id"]
    drive(redis, max_rounds=1, until_idle=False)
    # the running sync is not over, so the follow-up has not called the provider
    assert client.get(f"/jobs/{follow_up['id']}").get_json()["status"] == "queued"
    assert [c["method"] for c in sandbox_calls(sandbox, "mesa")].count("POST") == 1
    drive(redis)
    first = client.get(f"/jobs/{running['id']}").get_json()
    second = client.get(f"/jobs/{follow_up['id']}").get_json()
    assert first["status"] == second["status"] == "completed"
    assert second["started_at"] >= first["finished_at"]
    assert second["after"] == "3" * 40  # the newest commit is covered by a sync that began after it
    assert [c["method"] for c in sandbox_calls(sandbox, "mesa")].count("POST") == 2


def test_min_interval_spaces_sync_starts(write_config, redis: Redis, sandbox: Any) -> None:
    client = create_app(write_config(mesa_config(sandbox.url, min_interval=30)), redis).test_client()
    settings(sandbox, "mesa", polls=1)
    post(client, "s-1", "1" * 40)
    drive(redis, max_rounds=3, until_idle=False)
    follow_up = post(client, "s-2", "2" * 40)
    intervals = drive(redis, max_rounds=2, until_idle=False)
    assert client.get(f"/jobs/{follow_up['id']}").get_json()["status"] == "queued"
    assert 25 <= intervals[-1] <= 30  # asked to come back when 30 s have passed since the last start


@pytest.mark.parametrize("bridge_processes", [{"min_interval": "10s"}], indirect=True)  # the default
def test_a_burst_of_1000_pushes_causes_at_most_two_syncs(bridge_processes: str, sandbox: Any,  # noqa: F811
                                                         redis: Redis) -> None:
    settings(sandbox, "mesa", polls=2)
    shas = [f"{n:040x}" for n in range(1, 1001)]

    def send(n: int) -> dict[str, Any]:
        body = push_body(after=shas[n])
        response = requests.post(f"{bridge_processes}/hooks/github", data=body, timeout=10,
                                 headers=github_headers(body, delivery=f"burst-{n}"))
        assert response.status_code == 202, response.text
        return response.json()["jobs"][0]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = list(pool.map(send, range(999)))
    last = send(999)  # the newest push, after all the others were accepted
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the burst took {elapsed:.1f}s"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = requests.get(last["url"], timeout=5).json()
        if record["status"] in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert record["status"] == "completed", record
    assert record["after"] == shas[999]
    posts = [c for c in sandbox_calls(sandbox, "mesa") if c["method"] == "POST"]
    assert len(posts) <= 2, f"{len(posts)} provider syncs for one burst"
    assert len({job["id"] for job in [*jobs, last]}) <= 2
    print(f"\n1000 pushes in {elapsed:.1f}s -> {len(posts)} provider syncs")
