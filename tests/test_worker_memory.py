"""Worker memory: the default ``syncbridge worker``, all its processes together, holds at most 160 MiB.

Each process imports what it needs (docs/RELIABILITY.md, "Worker memory"); the config is checked in
a short-lived child before anything starts, so a bad one still stops the worker at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Worker

from bridge.embedded import EmbeddedRedis
from tests.conftest import environ_for, mesa_config
from tests.helpers import until
from tests.test_reliability import post_push, record_numbers, spawn, wait_done, web_process, write_config

MIB = 1024 * 1024
BOUND_MIB = 160  # issue 16: pool + worker processes (+ the scheduler, a thread now)


def tree(pid: int) -> list[int]:
    """``pid`` and every process under it, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents.setdefault(int(text[text.rindex(")") + 2:].split()[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096


def test_the_default_worker_holds_at_most_160_mib_with_all_its_processes(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any,
        request: pytest.FixtureRequest) -> None:
    config = write_config(tmp_path, mesa_config(sandbox.url))
    worker = spawn(["worker"], environ_for(redis_server.url, config), tmp_path / "worker.log")  # its defaults
    try:
        until(lambda: len(Worker.all(connection=redis)) == 2, 30, what="two worker processes registered")
        with web_process(config, redis_server.url, tmp_path / "web.log") as (url, _):
            for n in range(5):  # syncs run by both worker processes: config, provider, notify loaded
                answer = post_push(url, f"mem-{n}", after=f"{n + 1:040x}")
                assert wait_done(url, answer.json()["jobs"][0]["id"], timeout=60)["status"] == "completed"
        time.sleep(1)
        sizes = {pid: rss(pid) for pid in tree(worker.pid)}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    total = sum(sizes.values()) / MIB
    record_numbers(request, "worker_memory", total_mib=round(total, 1),
                   processes={str(pid): round(size / MIB, 1) for pid, size in sizes.items()})
    assert len(sizes) == 3  # the pool and its two worker processes; the scheduler is a thread
    assert total <= BOUND_MIB, sizes


def test_a_bad_config_stops_the_worker_before_anything_starts(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text("sources:\n  github: {kind: github, secret: short}\n")
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bridge", "worker"], env=environ_for(redis_server.url, path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{path}: sources.github.secret: too short" in result.stderr
    assert "Starting worker" not in result.stderr and time.monotonic() - began < 30
