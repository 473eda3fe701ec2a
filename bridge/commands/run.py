"""``syncbridge run``: the whole bridge in one command, for a first look and for development.

Starts a real redis-server (unless ``REDIS_URL`` is set), the web server and a worker as child
processes; with no config file, also the provider sandbox and a demo config pointing at it.
Ctrl-C (or SIGTERM, or closing the terminal) stops them all; so does any one of them dying.

Each child runs in a process group (a session) of its own, so a Ctrl-C reaches this process
alone and the children are stopped in order: one SIGTERM to each child's main process, which
stops its own workers however it runs them (granian's, RQ's pool), Redis last so the others can
still say goodbye to it. Whatever is left in a child's group once that child has exited, or
when the grace period ends, is killed: an orphaned web worker never keeps serving the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click
from redis import Redis
from rq.scheduler import RQScheduler

from bridge import config as config_module
from bridge.config import ConfigError
from bridge.embedded import EmbeddedRedis, free_port

SANDBOX_PORT = 8001
DEFAULT_PORT = 8000
STOP_GRACE = 7.0  # seconds each child has to stop before its process group is killed; Redis stops after
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def demo_mode() -> bool:
    """No config named and none in the current directory: run the sandboxed demo."""
    named = os.environ.get("SYNCBRIDGE_CONFIG") or os.environ.get(config_module.CONFIG_YAML_VAR)
    return not named and not Path(config_module.DEFAULT_PATH).exists()


@dataclass
class Child:
    """One child process, leader of a process group of its own (so its group id is its pid)."""

    name: str
    process: subprocess.Popen[bytes]

    def group_alive(self) -> bool:
        """Whether any process of the group is left (the child's own exit is collected first)."""
        self.process.poll()
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address the web server listens on")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", DEFAULT_PORT)),
              show_default="$PORT or 8000", help="port of the web server (the dashboard and the hooks)")
def run(host: str, port: int) -> None:
    """Run Redis (embedded unless REDIS_URL is set), the web server and a worker together."""
    env = dict(os.environ)
    children: list[Child] = []
    redis: EmbeddedRedis | None = None
    demo = demo_mode()
    if demo:
        env["SYNCBRIDGE_CONFIG"] = str(config_module.DEMO_PATH)
        env.setdefault("SYNCBRIDGE_SANDBOX_URL", f"http://127.0.0.1:{SANDBOX_PORT}")
    try:
        config = config_module.load(env=env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _ensure_free(host, port, "the web server's", "choose another with --port (or PORT)")
    if demo:
        sandbox = urlsplit(env["SYNCBRIDGE_SANDBOX_URL"])
        _ensure_free(sandbox.hostname or "127.0.0.1", sandbox.port or 80, "the provider sandbox's",
                     "set SYNCBRIDGE_SANDBOX_URL=http://127.0.0.1:<free port>")

    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    try:
        if not (env.get("REDIS_TLS_URL") or env.get("REDIS_URL") or env.get("REDIS_SENTINELS")):
            data_dir = Path(env.get("SYNCBRIDGE_DATA_DIR", ".syncbridge"))
            redis = EmbeddedRedis(data_dir / "redis", port=free_port())  # named first: a Ctrl-C while it
            redis.start()                                                  # starts still stops it
            env["REDIS_URL"] = redis.url
            _clear_scheduler_locks(redis.url)
            click.echo(f"redis      {redis.address} (embedded, with a password; append-only file in {redis.data_dir})")
        if demo:
            children.append(_spawn("sandbox", ["--port", str(sandbox.port)], env))
            click.echo(f"sandbox    {env['SYNCBRIDGE_SANDBOX_URL']} (stand-ins of every provider)")
        children.append(_spawn("web", ["--host", host, "--port", str(port)], env))
        children.append(_spawn("worker", [], env))
        url = _local_url(host, port)
        click.echo(f"web        {url}  (config: {config.path}{', demo' if demo else ''})")
        several = len(config.sources) > 1
        options = f" --source {next(iter(config.sources))}" if several else ""
        options += "" if port == DEFAULT_PORT else f" --url {url}"
        click.echo(f"\nsyncbridge is running. Send a signed test push from another terminal:\n"
                   f"  .venv/bin/syncbridge send-test{options}"
                   + (f"   (sources: {', '.join(config.sources)})" if several else "")
                   + (f"\nAny other acme repository reaches demo-acme-csr alone, a mirror named after it:\n"
                      f"  .venv/bin/syncbridge send-test{options} --repo acme/gadgets" if demo else "")
                   + "\nCtrl-C stops everything.")
        _wait(children)
    except KeyboardInterrupt:
        pass
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the stop short: it is bounded anyway
            signal.signal(signum, signal.SIG_IGN)
        if children or redis:
            click.echo(f"\nstopping (at most {STOP_GRACE + 3:.0f} s)...")
        _stop(children)
        if redis is not None:
            redis.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_free(host: str, port: int, what: str, hint: str) -> None:
    """Refuse to start anything when a port we are about to serve is taken, rather than half-start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind it
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"{what} port {host}:{port} is not free ({exc.strerror}): {hint}") from None


def _local_url(host: str, port: int) -> str:
    """The URL another terminal on this machine reaches the web server at."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _clear_scheduler_locks(url: str) -> None:
    """Drop RQ's scheduler locks that a run stopped abruptly left in the append-only file.

    Until such a lock expires (about a minute) no worker runs RQ's scheduler, so no poll and no
    retry is run. This Redis was started a moment ago by this command on a port of its own:
    nobody else can hold its locks.
    """
    client = Redis.from_url(url)
    try:
        stale = list(client.scan_iter(match=RQScheduler.get_locking_key("*")))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    process = subprocess.Popen([sys.executable, "-m", "bridge", name, *args], env=env, start_new_session=True)
    return Child(name, process)


def _wait(children: list[Child]) -> None:
    while True:
        for child in children:
            if child.process.poll() is not None:
                raise click.ClickException(f"{child.name} exited with status {child.process.returncode};"
                                           " stopping the rest")
        time.sleep(0.5)


def _stop(children: list[Child]) -> None:
    """SIGTERM to each child's main process; kill what is left of a group once its child has exited
    (orphans) or when the grace period ends (a child that would not stop)."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while True:
        alive = [child for child in children if child.group_alive()]
        if not alive:
            return
        for child in alive:
            if child.process.returncode is not None or time.monotonic() > deadline:
                child.signal_group(signal.SIGKILL)
        if time.monotonic() > deadline + 2:
            raise click.ClickException(f"{', '.join(child.name for child in alive)} would not stop")
        time.sleep(0.1)
