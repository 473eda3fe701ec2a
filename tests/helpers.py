"""Test code shared by modules: polling for a condition; a replicated Redis with Redis Sentinels, as real
processes on loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from bridge.embedded import EmbeddedRedis, free_port, redis_server_binary

SERVICE = "syncbridge-primary"


def until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition",
          ignore: tuple[type[Exception], ...] = ()) -> Any:
    """Poll ``predicate`` until it returns something truthy; that value, or AssertionError after ``timeout``.

    An exception of ``ignore`` counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def replicated(primary: EmbeddedRedis, replicas: list[EmbeddedRedis], timeout: float = 30) -> None:
    """Wait until every replica has finished its first sync (until then WAIT counts it out)."""
    client = Redis.from_url(primary.url)
    try:
        until(lambda: client.set("syncbridge-test:probe", "1") and client.wait(len(replicas), 200) == len(replicas),
              timeout, what=f"{len(replicas)} replicas in sync", ignore=(RedisError,))
    finally:
        client.close()


class Sentinels:
    """Three Redis Sentinels (``redis-server --sentinel``) watching ``primary`` as :data:`SERVICE`.

    They call the primary down after 1 s without an answer (``down-after-milliseconds``) and
    promote a replica once two of them agree; each rewrites its own config file as it learns.
    """

    def __init__(self, data_dir: Path, primary: EmbeddedRedis, count: int = 3):
        self.data_dir = data_dir
        self.primary = primary
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> Sentinels:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            config = self.data_dir / f"sentinel-{port}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
                              f"logfile {self.data_dir / f'sentinel-{port}.log'}\n"
                              f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                              f"sentinel auth-pass {SERVICE} {self.primary.password}\n"
                              f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                              f"sentinel failover-timeout {SERVICE} 5000\n"
                              f"sentinel parallel-syncs {SERVICE} 2\n")
            config.chmod(0o600)  # it holds the primary's password
            self.processes.append(subprocess.Popen([redis_server_binary(), str(config), "--sentinel"],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                   start_new_session=True))
        return self

    def ready(self, replicas: int, timeout: float = 30) -> None:
        """Wait until every Sentinel knows the primary, its replicas and the other Sentinels."""
        for port in self.ports:
            client = Redis(port=port, socket_timeout=1)
            try:
                until(lambda client=client: (state := client.sentinel_master(SERVICE))["num-slaves"] >= replicas
                      and state["num-other-sentinels"] == len(self.ports) - 1, timeout, interval=0.1,
                      what=f"Sentinel {port} seeing the primary, {replicas} replicas and its peers",
                      ignore=(RedisError,))
            finally:
                client.close()

    def primary_port(self) -> int:
        """The port of the primary the first Sentinel names now."""
        client = Redis(port=self.ports[0], socket_timeout=1)
        try:
            return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        finally:
            client.close()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
