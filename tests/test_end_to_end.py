"""The whole path with real processes: granian web -> Redis -> worker process -> sandbox -> status.

Also ``syncbridge run`` itself (embedded Redis, sandbox, web, worker) with ``send-test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from bridge.embedded import EmbeddedRedis, free_port
from tests.conftest import environ_for, github_headers, mesa_config, sandbox_calls
from tests.test_hooks import push_body


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still booting
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up in {timeout}s")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_bridge(config: Path, redis_url: str, processes: int = 2, port: int | None = None,
                   **env_extra: str) -> Iterator[str]:
    """``syncbridge web`` (one process) and ``processes`` workers as real processes; yields the web URL."""
    env = environ_for(redis_url, config, SYNCBRIDGE_LOG_LEVEL="WARNING", **env_extra)
    port = port or free_port()
    web = subprocess.Popen([sys.executable, "-m", "bridge", "web", "--host", "127.0.0.1", "--port", str(port),
                            "--workers", "1"], env=env)
    worker: subprocess.Popen[bytes] | None = None
    try:
        # The web first: a worker's first sweep asks GitHub to redeliver at once, to a web that must listen.
        wait_for(f"http://127.0.0.1:{port}/readyz")
        worker = subprocess.Popen([sys.executable, "-m", "bridge", "worker", "--processes", str(processes)], env=env)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(web)
        if worker is not None:
            stop(worker)


@pytest.fixture
def bridge_processes(request: pytest.FixtureRequest, tmp_path: Path, redis_server: EmbeddedRedis, redis,
                     sandbox: Any) -> Iterator[str]:
    """The bridge on a Mesa target; ``indirect`` parameters are that target's settings."""
    config = tmp_path / "syncbridge.yml"
    config.write_text(mesa_config(sandbox.url, **getattr(request, "param", {})).replace("\n        ", "\n"))
    with running_bridge(config, redis_server.url) as url:
        yield url


def wait_until_done(url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a job's status route until it ends; the last record seen."""
    deadline = time.monotonic() + timeout
    while True:
        record = requests.get(url, timeout=5).json()
        if record["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return record
        time.sleep(0.1)


def test_push_is_synced_through_real_processes(bridge_processes: str, sandbox: Any) -> None:
    body = push_body(after="c" * 40)
    sent = time.time()
    response = requests.post(f"{bridge_processes}/hooks/github", data=body,
                             headers=github_headers(body, delivery="e2e-1"), timeout=5)
    assert response.status_code == 202, response.text
    [summary] = response.json()["jobs"]
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = requests.get(summary["url"], timeout=5).json()
        if not seen or seen[-1] != record["status"]:
            seen.append(record["status"])
        if record["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert record["status"] == "completed", record
    assert record["after"] == "c" * 40 and record["remote"]["status"] == "completed"
    assert seen[-1] == "completed" and set(seen) <= {"queued", "in_progress", "completed"}
    calls = sandbox_calls(sandbox, "mesa")
    assert calls[0]["method"] == "POST"
    print(f"\npush received -> Mesa called: {1000 * (calls[0]['at'] - sent):.1f} ms")
    delivery = requests.get(f"{bridge_processes}/deliveries/e2e-1", timeout=5).json()
    assert [job["status"] for job in delivery["jobs"]] == ["completed"]


def test_syncbridge_run_demo_and_send_test(tmp_path: Path) -> None:
    """The README's promise: `syncbridge run` with no config, then `send-test` shows a completed job,
    and another acme repository reaches the demo's templated target alone.

    The data directory holds what an earlier run killed abruptly leaves: RQ's scheduler lock, which
    would hold back every poll until it expired (10 minutes here, longer than the test waits).
    """
    earlier = EmbeddedRedis(tmp_path / "data" / "redis").start()
    Redis.from_url(earlier.url).set("rq:scheduler-lock:syncbridge", "12345", ex=600)
    earlier.stop()
    port, sandbox_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
    env.update(PORT=str(port), SYNCBRIDGE_DATA_DIR=str(tmp_path / "data"),
               SYNCBRIDGE_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}")
    run = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
        sent = subprocess.run([sys.executable, "-m", "bridge", "send-test", "--source", "github", "--wait", "30"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "-> 202" in sent.stdout and "done: 8 completed, 0 failed" in sent.stdout, sent.stdout
        for provider in ("mesa", "google-csr", "bitbucket-dc", "azure-devops", "codearts", "gitlab-mirror",
                         "gitea-mirror"):
            assert "completed in" in sent.stdout and f"({provider}: " in sent.stdout
        assert "(google-csr projects/acme/repos/widgets: done)" in sent.stdout  # the demo's templated target
        other = subprocess.run([sys.executable, "-m", "bridge", "send-test", "--repo", "acme/gadgets", "--wait", "30"],
                               env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert other.returncode == 0, other.stdout + other.stderr
        assert "done: 1 completed, 0 failed" in other.stdout and "demo-acme-csr" in other.stdout, other.stdout
        assert "(google-csr projects/acme/repos/gadgets: done)" in other.stdout, other.stdout
    finally:
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=30)
    assert run.returncode == 0, output
    assert "stopping" in output
    assert (tmp_path / "data" / "redis" / "appendonlydir").exists() or (tmp_path / "data" / "redis").exists()
