"""Redis Sentinel: the primary SIGKILLed under a steady stream of signed pushes, and nothing accepted is lost.

Real processes on loopback: a primary, two replicas, three Sentinels (``redis-server
--sentinel``), ``syncbridge web`` and ``syncbridge worker`` configured with ``REDIS_SENTINELS``
and ``REDIS_SENTINEL_SERVICE`` (``REDIS_URL`` gives only the password) and
``SYNCBRIDGE_REDIS_REPLICAS=1``: a push is answered 2xx only once a replica holds it, so the
replica Sentinel promotes has it. Two replicas, so that the new primary still has one to wait for.

While the Sentinels fail over, pushes get 503 (never a hang, never a 2xx for work that may be
lost); then the same web process answers 2xx from the new primary; every push answered 2xx is
still known (``/deliveries/<id>``) and its job completes, run by the same worker.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from redis import Redis
from redis.exceptions import RedisError

from bridge.embedded import EmbeddedRedis, free_port, redis_server_binary
from tests.conftest import github_headers, mesa_config
from tests.helpers import SERVICE, Sentinels, replicated, until
from tests.test_hooks import push_body
from tests.test_reliability import (
    post_push,
    record_numbers,
    wait_done,
    web_process,
    worker_process,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
FIRST_2XX_BOUND = 15.0  # seconds from the kill to the first push answered 2xx (issue 16)
HANG = 5.0  # no answer may take longer: the bridge's own Redis timeouts are 1 s


class Stream:
    """Signed pushes, one after another, each with its own delivery id, on a thread of its own."""

    def __init__(self, url: str):
        self.url = url
        self.sent: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                number = len(self.sent)
                delivery = f"stream-{number}"
                body = push_body(after=f"{number + 1:040x}")
                began = time.monotonic()
                try:
                    answer = session.post(f"{self.url}/hooks/github", data=body, timeout=30,
                                          headers=github_headers(body, delivery=delivery))
                    status: int | str = answer.status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                self.sent.append({"delivery": delivery, "began": began, "took": time.monotonic() - began,
                                  "status": status})
                time.sleep(0.02)

    def accepted_since(self, moment: float) -> list[dict[str, Any]]:
        return [push for push in list(self.sent) if push["began"] > moment and push["status"] in (200, 202)]


def test_a_failover_under_a_stream_of_pushes_loses_no_accepted_push(
        tmp_path: Path, sandbox: Any, request: pytest.FixtureRequest) -> None:
    primary = EmbeddedRedis(tmp_path / "primary").start()
    replicas = [EmbeddedRedis(tmp_path / f"replica-{n}", replica_of=primary).start() for n in range(2)]
    sentinels = Sentinels(tmp_path / "sentinels", primary)
    try:
        replicated(primary, replicas)
        sentinels.start().ready(replicas=len(replicas))
        config = write_config(tmp_path, mesa_config(sandbox.url))
        # REDIS_URL only lends its password: the address is the Sentinels' to give.
        credentials = f"redis://:{primary.password}@primary.invalid:1/0"
        env = {"REDIS_SENTINELS": sentinels.addresses, "REDIS_SENTINEL_SERVICE": SERVICE,
               "SYNCBRIDGE_REDIS_REPLICAS": "1"}
        with web_process(config, credentials, tmp_path / "web.log", **env) as (url, _), \
                worker_process(config, credentials, tmp_path / "worker.log", **env):
            warm = post_push(url, "warm-up").json()["jobs"][0]["id"]
            assert wait_done(url, warm, timeout=60)["status"] == "completed"  # the worker works, on the primary
            with Stream(url) as stream:
                until(lambda: len(stream.accepted_since(0)) >= 20, 60, what="pushes accepted before the kill")
                primary.kill()
                killed = time.monotonic()
                until(lambda: stream.accepted_since(killed), 30, interval=0.1, what="a push accepted after the kill")
                recovered = stream.accepted_since(killed)[0]["began"] - killed
                time.sleep(2)  # pushes go on a while on the new primary
            pushes = stream.sent
            accepted = [push for push in pushes if push["status"] in (200, 202)]
            jobs: set[str] = set()
            for push in accepted:  # every push answered 2xx is known, by the same web process
                known = requests.get(f"{url}/deliveries/{push['delivery']}", params={"source": "github"}, timeout=5)
                assert known.status_code == 200, (push, known.text)
                jobs.update(job["id"] for job in known.json()["jobs"])
            records = [wait_done(url, job_id, timeout=60) for job_id in sorted(jobs)]  # run by the same worker
        assert sentinels.primary_port() in {replica.port for replica in replicas}
    finally:
        sentinels.stop()
        for server in (*replicas, primary):
            server.stop()

    statuses = sorted({str(push["status"]) for push in pushes})
    refused = [push for push in pushes if push["status"] == 503]
    record_numbers(request, "sentinel_failover", pushes=len(pushes), accepted=len(accepted), refused=len(refused),
                   first_2xx_after_kill_seconds=round(recovered, 1), jobs=len(jobs),
                   slowest_answer_seconds=round(max(push["took"] for push in pushes), 2))
    assert statuses in (["200", "202", "503"], ["202", "503"]), statuses  # nothing else: no 500, no timeout
    assert recovered <= FIRST_2XX_BOUND
    assert max(push["took"] for push in pushes) < HANG
    assert {record["status"] for record in records} == {"completed"}, records


def test_the_compose_sentinel_setup_names_sentinels_that_exist_and_the_primary_they_watch(tmp_path: Path) -> None:
    """docker-compose.sentinel.yml (the README's setup): web and worker name its three Sentinels and the
    service they watch, each replica follows `redis`, and a Sentinel's generated config starts a Sentinel."""
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    services = yaml.safe_load((ROOT / "docker-compose.sentinel.yml").read_text())["services"]
    assert {"redis", "web", "worker"} <= set(base)
    replicas = [name for name in services if name.startswith("redis-replica")]
    assert len(replicas) == 2
    assert all("--replicaof redis 6379" in " ".join(services[name]["command"]) for name in replicas)
    for name in ("web", "worker"):
        env = services[name]["environment"]
        sentinels = [address.rpartition(":")[0] for address in env["REDIS_SENTINELS"].split(",")]
        assert len(sentinels) == 3 and all(sentinel in services for sentinel in sentinels)
        assert 0 < int(env["SYNCBRIDGE_REDIS_REPLICAS"]) < len(replicas)  # one left to wait for after a failover
    script = services["sentinel-1"]["command"][2]
    assert f"sentinel monitor {env['REDIS_SENTINEL_SERVICE']} redis 6379 2" in script

    primary = EmbeddedRedis(tmp_path / "primary").start()
    port = free_port()
    local = (script.replace("/data", str(tmp_path)).replace("port 26379", f"port {port}")
             .replace("redis 6379", f"127.0.0.1 {primary.port}").replace("redis-server", redis_server_binary()))
    sentinel = subprocess.Popen(["sh", "-c", local], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Redis(port=port, socket_timeout=1)
    try:
        master = until(lambda: client.sentinel_master(env["REDIS_SENTINEL_SERVICE"]), 10,
                       what="the Sentinel answering", ignore=(RedisError,))
        assert int(master["port"]) == primary.port
    finally:
        client.close()
        sentinel.terminate()
        sentinel.wait(timeout=10)
        primary.stop()

