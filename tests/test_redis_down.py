"""Redis unreachable, through real processes: the worker says so in one line (password masked) and
waits with backoff instead of dying and being respawned in a loop; ``/readyz`` and the dashboard
say what is wrong in words; ``syncbridge worker --check`` (compose's health check) tells a live
worker from a dead one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from redis import Redis

from bridge.embedded import EmbeddedRedis, free_port
from workers.worker import ALIVE_WITHIN

PASSWORD = "redis-password-never-shown"
REFUSED = "cannot connect to Redis: connection refused"
CONFIG = """\
sources:
  github: {kind: github, secret: a-webhook-secret-for-tests}
targets:
  m: {provider: mesa, base_url: "http://127.0.0.1:9/mesa/v1", org: acme, repo: widgets, token: t}
routes:
  - {source: github, repo: acme/widgets, targets: [m]}
"""


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A process environment whose REDIS_URL (with a password) points at a port nothing listens on."""
    (tmp_path / "syncbridge.yml").write_text(CONFIG)
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
    environ.update(SYNCBRIDGE_CONFIG=str(tmp_path / "syncbridge.yml"),
                   REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    return environ


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        child = subprocess.Popen([sys.executable, "-m", "bridge", *args], env=env, stdout=sink,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def worker_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "worker", "--check"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_worker_waits_for_redis_in_one_line_then_starts(tmp_path: Path, env: dict[str, str]) -> None:
    port = int(env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    log = tmp_path / "worker.log"
    down = worker_check(env)
    assert down.returncode == 1
    assert down.stderr == f"Error: redis at redis://***@127.0.0.1:{port}/0: {REFUSED}\n"
    with process(["worker", "--processes", "2"], env, log) as worker:
        until(lambda: "retrying" in log.read_text(), 30, "the worker's line about Redis")
        time.sleep(5)  # what it says while it waits: before, 2,210 lines of tracebacks in 20 s
        assert worker.poll() is None
        waiting = log.read_text()
        assert waiting.splitlines()[-1].endswith(
            f"ERROR syncbridge.worker: redis at redis://***@127.0.0.1:{port}/0: {REFUSED};"
            " retrying with backoff (every 30 s at most)"), waiting
        assert len(waiting.splitlines()) == 1 and PASSWORD not in waiting

        with EmbeddedRedis(tmp_path / "redis", port=port, appendonly=False) as server:
            Redis.from_url(server.url).config_set("requirepass", PASSWORD)
            client = Redis.from_url(env["REDIS_URL"])
            until(lambda: client.scard("rq:workers") == 2, 60, "both pool workers registered")
            alive = worker_check(env)
            assert alive.returncode == 0, alive.stderr
            assert alive.stdout.startswith("2 worker processes alive on ")
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            dead = worker_check(env)
            assert dead.returncode == 1 and f"has sent a heartbeat in the last {ALIVE_WITHIN} s" in dead.stderr
    output = log.read_text()
    assert "Traceback" not in output and PASSWORD not in output
    assert "answers after" in output and output.count("retrying with backoff") == 1


def test_readyz_and_the_dashboard_say_what_is_wrong_in_words(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    web = ["web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with process(web, env, tmp_path / "web.log"):
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        until(healthy, 60, "the web server up")
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "redis": "ConnectionError", "reason": REFUSED}
        page = requests.get(f"{base}/", timeout=5)
        assert page.status_code == 503 and page.headers["Content-Type"].startswith("text/html")
        assert page.text.startswith("<!doctype html>") and f"The job store is unavailable: {REFUSED}." in page.text
        assert page.headers["Retry-After"] == "5"
        data = requests.get(f"{base}/dashboard.json", timeout=5)
        assert data.status_code == 503 and data.json() == {"error": REFUSED}
    assert PASSWORD not in (tmp_path / "web.log").read_text()


def test_run_with_an_unreachable_redis_waits_quietly_and_stops(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "run.log"
    with process(["run", "--port", str(free_port())], {**env, "PORT": ""}, log) as run:
        until(lambda: "retrying" in log.read_text(), 60, "the worker's line about Redis")
        time.sleep(3)
        assert run.poll() is None
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=15) == 0
    output = log.read_text()
    assert "Traceback" not in output and PASSWORD not in output, output
    assert output.count(f"{REFUSED}; retrying with backoff") == 1, output
