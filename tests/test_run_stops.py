"""``syncbridge run`` stops everything it started: real processes, real signals.

A Ctrl-C in a terminal is SIGINT to the whole foreground process group; each case starts ``run``
as such a group of its own (the demo: embedded Redis, sandbox, granian web with 2 processes, an
RQ worker pool), stops it one way or another, and then every process it had started must be gone
within 10 s and the ports free. Before, granian web processes outlived a Ctrl-C, re-parented to
PID 1 and still serving the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis

from bridge.embedded import free_port

STOP_BOUND = 10.0  # the promise: every child ends within 10 s of the signal


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    output: Path
    data_dir: Path
    web_port: int
    sandbox_port: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def redis_url(self) -> str | None:
        """The embedded Redis's URL with its password: run prints it masked, its children were handed it whole."""
        for child in self.started():
            with contextlib.suppress(psutil.Error):
                if url := child.environ().get("REDIS_URL"):
                    return url
        return None

    def started(self) -> list[psutil.Process]:
        """Every live process this run started, wherever it sits now (an orphan has PID 1 as parent):
        they all inherited its SYNCBRIDGE_DATA_DIR, a directory of this test's own."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if (process.pid != self.process.pid and process.status() != psutil.STATUS_ZOMBIE
                        and process.environ().get("SYNCBRIDGE_DATA_DIR") == str(self.data_dir)):
                    found.append(process)
        return found


def start_run(tmp_path: Path, sandbox_port: int | None = None) -> Run:
    """``syncbridge run`` in the demo mode, as the leader of its own process group (a terminal's job)."""
    web_port, sandbox_port = free_port(), sandbox_port or free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_", "PORT"))}
    env.update(SYNCBRIDGE_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}", SYNCBRIDGE_DATA_DIR=str(tmp_path / "data"),
               WEB_CONCURRENCY="2", SYNCBRIDGE_WORKER_PROCESSES="2")
    output = tmp_path / "run.log"
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--port", str(web_port)], cwd=tmp_path,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    return Run(process, output, tmp_path / "data", web_port, sandbox_port)


def wait_until_serving(run: Run, timeout: float = 60) -> None:
    """The web answers /readyz and both RQ workers have registered in the embedded Redis."""
    deadline = time.monotonic() + timeout
    redis_url = None
    while time.monotonic() < deadline:
        assert run.process.poll() is None, run.text()
        redis_url = redis_url or run.redis_url()
        try:
            ready = requests.get(f"http://127.0.0.1:{run.web_port}/readyz", timeout=2).status_code == 200
            if ready and redis_url and Redis.from_url(redis_url).scard("rq:workers") >= 2:
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"syncbridge run did not come up in {timeout}s:\n{run.text()}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def assert_all_gone(run: Run) -> None:
    """``run`` and every process it had started end within the bound, and nothing serves the web port."""
    deadline = time.monotonic() + STOP_BOUND
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.process.wait(timeout=STOP_BOUND)
    while (left := run.started()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if run.process.poll() is None:
        left.append(psutil.Process(run.process.pid))
    leftovers = [f"{process.pid} {' '.join(process.cmdline())}" for process in left]
    for process in left:  # never leave them to the next test
        process.kill()
    assert not leftovers, f"still running {STOP_BOUND}s after the stop:\n" + "\n".join(leftovers) + run.text()
    assert port_is_free(run.web_port)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Run]:
    run = start_run(tmp_path)
    try:
        wait_until_serving(run)
        yield run
    finally:
        for process in run.started():
            process.kill()
        if run.process.poll() is None:
            run.process.kill()


@pytest.mark.parametrize("how", ["ctrl-c to the group", "sigterm to run"])
def test_every_child_ends_and_the_ports_are_free(running: Run, how: str) -> None:
    started = running.started()
    assert len(started) >= 7, [p.cmdline() for p in started]  # redis, sandbox, web x3, worker x3 (and a scheduler)
    if how == "ctrl-c to the group":
        os.killpg(running.process.pid, signal.SIGINT)
    else:
        running.process.send_signal(signal.SIGTERM)
    assert_all_gone(running)
    assert port_is_free(running.sandbox_port)
    assert running.process.returncode == 0
    output = running.text()
    assert "stopping" in output and "Traceback" not in output, output


def test_a_child_that_dies_stops_the_rest(running: Run) -> None:
    # The start-up hint works as printed, off port 8000 too (the demo has one source: no --source).
    assert f"\n  .venv/bin/syncbridge send-test --url http://127.0.0.1:{running.web_port}\n" in running.text()
    worker = next(p for p in running.started() if p.cmdline()[-1] == "worker" and p.ppid() == running.process.pid)
    worker.kill()
    assert_all_gone(running)
    assert running.process.returncode == 1
    assert "worker exited with status -9; stopping the rest" in running.text()


def test_a_busy_sandbox_port_stops_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = start_run(tmp_path, sandbox_port=taken.getsockname()[1])
        assert run.process.wait(timeout=60) == 1
        assert_all_gone(run)
    output = run.text()
    assert f"the provider sandbox's port 127.0.0.1:{run.sandbox_port} is not free" in output, output
    assert "SYNCBRIDGE_SANDBOX_URL" in output and "Traceback" not in output
