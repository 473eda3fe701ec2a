"""``SYNCBRIDGE_REDIS_REPLICAS``: a delivery is answered 2xx only once that many replicas hold it.

A real primary and a real replica (redis-server processes on loopback). While the replica is
frozen (SIGSTOP) it acknowledges nothing: the delivery gets a 503, and the host's retry, once the
replica is back, is deduped by its delivery id (200, the same jobs). Both ways in are tested: the
event-loop edge of ``syncbridge web`` (``AsyncScript``: the script and WAIT in one write) and the
Flask view (``Enqueuer.commit``: one pipeline).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from bridge.app import create_app
from bridge.config import load
from bridge.connection import NoRedis
from bridge.embedded import EmbeddedRedis
from bridge.store import delivery_key
from tests.conftest import github_headers, mesa_config
from tests.helpers import replicated
from tests.test_hooks import push_body
from tests.test_reliability import post_push, wait_done, web_process, worker_process, write_config

Post = Callable[[str, str], tuple[int, dict[str, Any], Mapping[str, str]]]  # delivery, after -> status, body, headers
NO_PROVIDER = "http://127.0.0.1:9"  # no worker runs in most of these tests: nothing calls the provider


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    primary = EmbeddedRedis(tmp_path / "primary").start()
    replica = EmbeddedRedis(tmp_path / "replica", replica_of=primary).start()
    try:
        replicated(primary, [replica])
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@contextmanager
def frozen(server: EmbeddedRedis) -> Iterator[None]:
    """The server stopped in its tracks (SIGSTOP): connected, acknowledging nothing."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@contextmanager
def through_the_edge(tmp_path: Path, primary: EmbeddedRedis, replicas: int) -> Iterator[Post]:
    """Pushes through ``syncbridge web``: its event-loop edge stores them with ``AsyncScript``."""
    config = write_config(tmp_path, mesa_config(NO_PROVIDER))
    with web_process(config, primary.url, tmp_path / "web.log", SYNCBRIDGE_REDIS_REPLICAS=str(replicas)) as (url, _):
        def post(delivery: str, after: str) -> tuple[int, dict[str, Any], Mapping[str, str]]:
            answer = post_push(url, delivery, after=after)
            return answer.status_code, answer.json(), answer.headers

        yield post


@contextmanager
def through_flask(tmp_path: Path, primary: EmbeddedRedis, replicas: int,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Post]:
    """Pushes through the Flask view (any WSGI server): it stores them with ``Enqueuer.commit``."""
    monkeypatch.setenv("SYNCBRIDGE_REDIS_REPLICAS", str(replicas))
    config = load(write_config(tmp_path, mesa_config(NO_PROVIDER)))
    client = create_app(config, Redis.from_url(primary.url)).test_client()

    def post(delivery: str, after: str) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        body = push_body(after=after)
        answer = client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
        return answer.status_code, answer.get_json(), answer.headers

    yield post


@pytest.mark.parametrize("way_in", ["edge", "flask"])
def test_a_delivery_is_answered_2xx_only_once_a_replica_holds_it(
        tmp_path: Path, primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis], way_in: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    primary, replica = primary_and_replica
    on_replica = Redis.from_url(replica.url)
    ways = {"edge": lambda: through_the_edge(tmp_path, primary, 1),
            "flask": lambda: through_flask(tmp_path, primary, 1, monkeypatch)}
    with ways[way_in]() as post:
        status, body, _ = post("held-1", "1" * 40)
        assert status == 202, body
        assert on_replica.exists(delivery_key("github", "held-1"))  # the replica holds it as the 202 leaves

        with frozen(replica):
            status, body, headers = post("held-2", "2" * 40)
        assert status == 503 and headers.get("Retry-After"), body

        replicated(primary, [replica])
        status, body, _ = post("held-2", "2" * 40)  # the host's retry, once the replica is back
        assert status == 200, body  # deduped: the first attempt's jobs, nothing new
        assert [job["id"] for job in body["jobs"]] and on_replica.exists(delivery_key("github", "held-2"))
    on_replica.close()


def test_asking_for_more_replicas_than_there_are_gives_503_every_time(
        tmp_path: Path, primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis]) -> None:
    primary, _ = primary_and_replica
    with through_the_edge(tmp_path, primary, 2) as post:
        assert [post(f"two-{n}", f"{n + 1:040x}")[0] for n in range(3)] == [503, 503, 503]


def test_jobs_accepted_with_a_replica_complete(
        tmp_path: Path, primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis], sandbox: Any) -> None:
    """WAIT changes nothing downstream: the worker runs what was accepted."""
    primary, _ = primary_and_replica
    config = write_config(tmp_path, mesa_config(sandbox.url))
    with web_process(config, primary.url, tmp_path / "web.log", SYNCBRIDGE_REDIS_REPLICAS="1") as (url, _), \
            worker_process(config, primary.url, tmp_path / "worker.log", SYNCBRIDGE_REDIS_REPLICAS="1"):
        answer = post_push(url, "runs-1")
        assert answer.status_code == 202
        assert wait_done(url, answer.json()["jobs"][0]["id"], timeout=60)["status"] == "completed"


@pytest.mark.parametrize("value", ["one", "-1", "1.5"])
def test_a_replica_count_that_is_not_a_number_stops_the_web_at_start(
        value: str, redis: Redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYNCBRIDGE_REDIS_REPLICAS", value)
    with pytest.raises(NoRedis, match=f"SYNCBRIDGE_REDIS_REPLICAS: '{value}' is not a number of replicas"):
        create_app(load(write_config(tmp_path, mesa_config(NO_PROVIDER))), redis)
