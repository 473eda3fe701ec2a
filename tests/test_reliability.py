"""Faults against real processes: a worker killed mid-sync, Redis crashed or down, an oversized body.

Everything here is real: redis-server (bridge.embedded), granian (``syncbridge web``), RQ's
WorkerPool (``syncbridge worker``), the provider sandbox over HTTP. Each process writes its log
to a file of the test's tmp_path. The numbers each test measures are printed (``-s``) and kept
in pytest's cache under ``reliability/`` for docs/RELIABILITY.md.

The only timed assertions are the issues' bounds: recovery from a killed worker within 30 s,
and a 503 within 1 s while Redis is down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from rq.registry import ScheduledJobRegistry

from bridge.app import create_app
from bridge.config import load
from bridge.embedded import EmbeddedRedis, free_port
from bridge.queueing import QUEUE_NAME
from bridge.store import job_key
from tests.conftest import SECRET, TOKEN, environ_for, github_headers, mesa_config, sandbox_calls
from tests.helpers import until
from tests.test_end_to_end import wait_for
from tests.test_hooks import push_body

# -- helpers shared by the reliability tests ------------------------------------------------------------------


def record_numbers(request: pytest.FixtureRequest, name: str, **numbers: Any) -> None:
    """Print what a test measured and keep it in pytest's cache (reliability/<name>) for the docs."""
    print(f"\n{name}: {json.dumps(numbers)}")
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache.set(f"reliability/{name}", numbers)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m bridge <args>`` in a session (process group) of its own, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bridge", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, dead but not yet reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        state, _, pgrp = text[text.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def end(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process we started, then SIGKILL whatever is left of its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    if group_alive(process.pid):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def web_process(config: Path, redis_url: str, log: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``syncbridge web`` (one process, its threads) on a free port; yields its URL and process."""
    port = free_port()
    process = spawn(["web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                    environ_for(redis_url, config, **{"SYNCBRIDGE_LOG_LEVEL": "INFO", **env}), log)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
        yield f"http://127.0.0.1:{port}", process
    finally:
        end(process)


@contextmanager
def worker_process(config: Path, redis_url: str, log: Path, processes: int = 2,
                   **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``syncbridge worker``: RQ's WorkerPool with ``processes`` SimpleWorkers and a scheduler."""
    process = spawn(["worker", "--processes", str(processes)],
                    environ_for(redis_url, config, **{"SYNCBRIDGE_LOG_LEVEL": "INFO", **env}), log)
    try:
        yield process
    finally:
        end(process)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncbridge.yml"
    path.write_text(text.replace("\n        ", "\n"))
    load(path)  # fail here, not in a child process, if the test wrote a bad config
    return path


def targets_config(sandbox_url: str, names: list[str], **settings: Any) -> str:
    """A GitHub source routed to one Mesa target (on the sandbox) per name, each its own repo."""
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in settings.items())
    targets = "".join(f"  {name}: {{provider: mesa, base_url: '{sandbox_url}/mesa/v1', org: acme, repo: {name}, "
                      f"token: {TOKEN}, min_interval: 0{extra}}}\n" for name in names)
    return (f"sources:\n  github: {{kind: github, secret: {SECRET}}}\ntargets:\n{targets}"
            f"routes:\n  - {{source: github, repo: acme/widgets, targets: [{', '.join(names)}]}}\n")


def post_push(url: str, delivery: str, after: str = "a" * 40, timeout: float = 5) -> requests.Response:
    body = push_body(after=after)
    return requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, delivery=delivery),
                         timeout=timeout)


def sandbox_settings(sandbox: Any, **values: Any) -> None:
    requests.put(f"{sandbox.url}/_sandbox/settings/mesa", json=values, timeout=5).raise_for_status()


def job_record(url: str, job_id: str) -> dict[str, Any]:
    return requests.get(f"{url}/jobs/{job_id}", timeout=5).json()


def wait_done(url: str, job_id: str, timeout: float) -> dict[str, Any]:
    return until(lambda: (r := job_record(url, job_id))["status"] in ("completed", "failed") and r, timeout,
                 interval=0.2, what=f"job {job_id} ending")


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- 1. a worker killed in the middle of a sync -------------------------------------------------------------


def test_a_worker_killed_mid_sync_is_recovered_by_a_new_worker(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any,
        request: pytest.FixtureRequest) -> None:
    """SIGKILL the whole worker (pool, its SimpleWorkers, the scheduler) while the trigger call is in
    flight; a new worker finds the job abandoned and the sync completes, within 30 s of the kill."""
    config = write_config(tmp_path, mesa_config(sandbox.url, request_timeout=5))
    sandbox_settings(sandbox, latency=3, polls=2)  # every provider call takes 3 s: the kill lands inside one
    with web_process(config, redis_server.url, tmp_path / "web.log") as (url, _):
        first = spawn(["worker", "--processes", "2"], environ_for(redis_server.url, config), tmp_path / "worker-1.log")
        try:
            answer = post_push(url, "kill-1")
            assert answer.status_code == 202
            job_id = answer.json()["jobs"][0]["id"]
            until(lambda: sandbox_calls(sandbox, "mesa"), 30, what="the trigger call reaching the provider")
            os.killpg(first.pid, signal.SIGKILL)
            killed_at = time.time()
        finally:
            end(first)
        until(lambda: not group_alive(first.pid), 10, what="every process of the killed worker gone")
        stranded = job_record(url, job_id)
        assert stranded["status"] == "in_progress" and stranded["remote"] is None  # killed mid-trigger

        sandbox_settings(sandbox, latency=0)  # the provider is fast again; what is measured is RQ's recovery
        with worker_process(config, redis_server.url, tmp_path / "worker-2.log"):
            record = wait_done(url, job_id, timeout=60)
    recovery = epoch(record["finished_at"]) - killed_at
    triggers = [call for call in sandbox_calls(sandbox, "mesa") if call["method"] == "POST"]
    record_numbers(request, "worker_kill", recovery_seconds=round(recovery, 1),
                   rerun_after_seconds=round(triggers[-1]["at"] - killed_at, 1), triggers=len(triggers),
                   attempts=record["attempts"])
    assert record["status"] == "completed" and record["error"] is None, record
    assert recovery <= 30, f"the sync completed {recovery:.0f}s after the worker was killed"
    # At least once: the trigger cut short by the kill is sent again (the provider got two).
    assert len(triggers) == 2 and record["attempts"] == 2
    assert record["remote"]["status"] == "completed"


# -- 2a. Redis crashes between receipt and processing -------------------------------------------------------


def test_accepted_pushes_survive_a_redis_crash_with_the_append_only_file(
        tmp_path: Path, sandbox: Any, request: pytest.FixtureRequest) -> None:
    """Pushes accepted (202) with no worker running; Redis SIGKILLed and started again on its data dir;
    then a worker: every accepted delivery's jobs complete, and dedupe still knows the deliveries."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    names = ["aof-a", "aof-b", "aof-c"]
    config = write_config(tmp_path, targets_config(sandbox.url, names))
    try:
        with web_process(config, server.url, tmp_path / "web.log") as (url, _):
            deliveries: dict[str, list[str]] = {}
            for n in range(8):
                answer = post_push(url, f"aof-{n}", after=f"{n + 1:040x}")
                assert answer.status_code == 202, answer.text
                deliveries[f"aof-{n}"] = [job["id"] for job in answer.json()["jobs"]]
            job_ids = {job_id for ids in deliveries.values() for job_id in ids}
            assert len(job_ids) == len(names)  # later pushes joined the waiting sync of each target

            time.sleep(1.5)  # appendfsync everysec: an acknowledged write is on disk within about a second
            server.kill()
            server.start()  # same data dir, same port
            wait_for(f"{url}/readyz")  # the same web process, not restarted

            again = post_push(url, "aof-0", after=f"{1:040x}")
            assert again.status_code == 200  # a redelivery: the dedupe record survived the crash
            assert [job["id"] for job in again.json()["jobs"]] == deliveries["aof-0"]

            with worker_process(config, server.url, tmp_path / "worker.log"):
                records = [wait_done(url, job_id, timeout=60) for job_id in sorted(job_ids)]
            for delivery, ids in deliveries.items():
                shown = requests.get(f"{url}/deliveries/{delivery}", timeout=5).json()
                assert [job["id"] for job in shown["jobs"]] == ids
                assert {job["status"] for job in shown["jobs"]} == {"completed"}, shown
    finally:
        server.stop()
    assert all(r["status"] == "completed" and r["after"] == f"{8:040x}" for r in records), records
    record_numbers(request, "redis_crash_aof", accepted=len(deliveries), jobs=len(job_ids),
                   completed=sum(r["status"] == "completed" for r in records), lost=0)


def test_without_an_append_only_file_a_redis_crash_loses_accepted_pushes(tmp_path: Path, sandbox: Any) -> None:
    """What RELIABILITY.md says of a Redis without persistence: a crash forgets accepted work, and the
    delivery ids with it, so only a redelivery by the host brings the push back (as new work)."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        config = load(write_config(tmp_path, mesa_config(sandbox.url)))
        client = create_app(config, Redis.from_url(server.url)).test_client()
        body = push_body()
        accepted = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="no-aof-1"))
        assert accepted.status_code == 202
        job_id = accepted.get_json()["jobs"][0]["id"]
        time.sleep(1.5)
        server.kill()
        server.start()
        assert client.get(f"/jobs/{job_id}").status_code == 404
        assert client.get("/deliveries/no-aof-1").status_code == 404
        redelivered = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="no-aof-1"))
        assert redelivered.status_code == 202 and redelivered.get_json()["jobs"][0]["id"] != job_id
    finally:
        server.stop()


# -- 2b. Redis down: the receiver says so at once, and nothing needs restarting -----------------------------


def test_redis_down_gives_a_prompt_503_and_web_and_worker_recover_without_a_restart(
        tmp_path: Path, sandbox: Any, request: pytest.FixtureRequest) -> None:
    """Redis killed while a sync is being followed: pushes get 503 at once (nothing stored), /readyz
    503; Redis back on its data: the same web process takes the host's retry (202, new work) and the
    same worker pool triggers it and finishes the sync it was following."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    base = f"{sandbox.url}/mesa/v1"
    config = write_config(tmp_path, f"""
sources: {{github: {{kind: github, secret: {SECRET}}}}}
targets:
  followed: {{provider: mesa, base_url: "{base}", org: acme, repo: widgets, token: {TOKEN}, min_interval: 0}}
  fresh: {{provider: mesa, base_url: "{base}", org: acme, repo: gadgets, token: {TOKEN}, min_interval: 0}}
routes:
  - {{source: github, repo: acme/widgets, targets: [followed]}}
  - {{source: github, repo: acme/gadgets, targets: [fresh]}}
""")
    watcher = Redis.from_url(server.url, socket_timeout=1)
    try:
        with web_process(config, server.url, tmp_path / "web.log") as (url, web), \
                worker_process(config, server.url, tmp_path / "worker.log") as worker:
            sandbox_settings(sandbox, polls=6)  # still being followed when Redis goes away
            first = post_push(url, "before-outage", after="1" * 40).json()["jobs"][0]["id"]
            scheduled = ScheduledJobRegistry(QUEUE_NAME, connection=watcher)
            # Between two polls (the third comes 2 s after the second), so no execution is cut short.
            until(lambda: int(watcher.hget(job_key(first), "polls") or 0) >= 2
                  and first in scheduled.get_job_ids(), 30, interval=0.02, what="the second poll done")
            sandbox_settings(sandbox, polls=2)  # syncs triggered from now on end after two polls
            server.kill()
            down_at = time.monotonic()

            body = push_body(repo="acme/gadgets", after="2" * 40)
            headers = github_headers(body, delivery="during-outage")
            latencies = []
            for _ in range(5):
                started = time.monotonic()
                refused = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
                latencies.append(time.monotonic() - started)
                assert refused.status_code == 503 and refused.headers.get("Retry-After"), refused.text
                assert "nothing was stored" in refused.json()["error"]
            started = time.monotonic()
            ready = requests.get(f"{url}/readyz", timeout=5)
            latencies.append(time.monotonic() - started)
            assert ready.status_code == 503
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200  # alive, only not ready
            time.sleep(max(0.0, 4 - (time.monotonic() - down_at)))  # let the worker fail a few reconnects

            server.start()
            outage = time.monotonic() - down_at
            back_at = time.time()
            wait_for(f"{url}/readyz")
            retried = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
            assert retried.status_code == 202, retried.text  # the 503s stored nothing: the host's retry is new work
            second = retried.json()["jobs"][0]["id"]
            done = {job_id: wait_done(url, job_id, timeout=90) for job_id in (second, first)}
            assert web.poll() is None and worker.poll() is None  # neither was restarted
    finally:
        watcher.close()
        server.stop()
    assert all(record["status"] == "completed" for record in done.values()), done
    fresh_trigger = next(call for call in sandbox_calls(sandbox, "mesa")
                         if call["method"] == "POST" and "/gadgets/" in call["path"])
    log = (tmp_path / "worker.log").read_text()
    record_numbers(request, "redis_down", max_503_ms=round(1000 * max(latencies), 1), outage_seconds=round(outage, 1),
                   retried_push_triggered_after_seconds=round(fresh_trigger["at"] - back_at, 1),
                   retried_push_completed_after_seconds=round(epoch(done[second]["finished_at"]) - back_at, 1),
                   followed_sync_completed_after_seconds=round(epoch(done[first]["finished_at"]) - back_at, 1),
                   worker_processes_respawned=log.split("Received SIGINT/SIGTERM")[0].count(" is dead"))
    assert max(latencies) <= 1.0, latencies


# -- 4 (part). An oversized body is refused without being read -----------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_sent(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis,
                                                         sandbox: Any, request: pytest.FixtureRequest) -> None:
    """Content-Length: 30000000 and a few bytes: the receiver answers 413 while the client still owes
    almost all of the body, so the server never waits for (or buffers) the 30 MB."""
    config = write_config(tmp_path, mesa_config(sandbox.url))
    with web_process(config, redis_server.url, tmp_path / "web.log") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            started = time.monotonic()
            conn.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"X-GitHub-Event: push\r\nX-GitHub-Delivery: huge-1\r\nContent-Length: 30000000\r\n\r\n"
                         b'{"ref": "refs/heads/main", ')
            answer = b""
            while b"\r\n\r\n" not in answer:  # the socket timeout (10 s) fails the test if the server waits
                chunk = conn.recv(65536)
                assert chunk, "the server closed the connection without answering"
                answer += chunk
            elapsed = time.monotonic() - started
            # While that connection is still open and owing 30 MB, the server answers others.
            assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # Nothing stored: no job (the delivery log may already list the refused request, as a 413).
        after = requests.get(f"{url}/deliveries/huge-1", timeout=5)
        assert after.status_code == 404 or (after.json()["jobs"] == [] and after.json()["received"][0]["status"] == 413)
    record_numbers(request, "oversized_body", answered_ms=round(1000 * elapsed, 1), body_bytes_sent=27)
