"""The embedded Redis of ``syncbridge run`` is its user's alone.

Anyone on the machine can open 127.0.0.1, and whoever can write to the bridge's Redis can
enqueue an RQ job that the worker runs (any importable function, ``builtins.print`` say). So
the server asks for a random password that never appears on a command line, its data directory
is this user's only, and web, worker, send-test and the CLI started by ``run`` still work.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry
from rq import Queue

from bridge.embedded import EmbeddedRedis, free_port
from tests.test_end_to_end import wait_for


def outsider(port: int) -> Redis:
    """Another local user's client: it knows the port (any user can list them), not the password."""
    return Redis(port=port, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))  # refused is final


def assert_closed_to(client: Redis) -> None:
    for attempt in (lambda: client.ping(), lambda: client.keys("*"),
                    lambda: Queue("syncbridge", connection=client).enqueue("builtins.print", "owned")):
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            attempt()


def command_lines() -> Iterator[str]:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            yield cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue


def test_the_embedded_redis_asks_for_a_password_that_no_command_line_shows(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data").start()
    try:
        assert_closed_to(outsider(server.port))
        assert not any(server.password in line for line in command_lines())
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        owner = Redis.from_url(server.url)
        owner.set("kept", "yes")
        server.stop()
        server.start()  # a restart keeps the password, so clients holding the URL carry on
        assert Redis.from_url(server.url).get("kept") == b"yes"
        assert_closed_to(outsider(server.port))
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == pid:
            found.append(int(status.parent.name))
    return found


def test_syncbridge_run_keeps_its_redis_to_itself_and_needs_no_token(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
    env.update(PORT=str(port), SYNCBRIDGE_DATA_DIR=str(tmp_path / "data"),
               SYNCBRIDGE_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env, cwd=tmp_path, stdout=out,
                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
        redis_port = int(re.search(r"redis +redis://127\.0\.0\.1:(\d+)/0 ", log.read_text())[1])
        assert_closed_to(outsider(redis_port))
        environments = [Path(f"/proc/{child}/environ").read_bytes() for child in children(run.pid)]
        urls = [found[1].decode() for environ in environments if (found := re.search(rb"REDIS_URL=([^\0]+)", environ))]
        assert len(urls) == 3 and len(set(urls)) == 1, urls  # sandbox, web and worker (redis-server has none)
        password = Redis.from_url(urls[0]).connection_pool.connection_kwargs["password"]
        assert len(password) >= 32 and password not in log.read_text()
        assert not any(password in line for line in command_lines())

        sent = subprocess.run([sys.executable, "-m", "bridge", "send-test", "--source", "github", "--wait", "30"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and "done: 8 completed, 0 failed" in sent.stdout, sent.stdout + sent.stderr
        listed = subprocess.run([sys.executable, "-m", "bridge", "jobs"], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)  # no token anywhere: protected mode lets this machine in
        assert listed.returncode == 0 and listed.stdout.count(" completed ") == 8, listed.stdout + listed.stderr
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)
    assert run.returncode == 0, log.read_text()
