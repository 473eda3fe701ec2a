"""``syncbridge run``: the whole bridge in one command, for a first look and for development.

Starts a real redis-server (unless ``REDIS_URL`` is set), the web server and a worker as child
processes; with no config file, also the provider sandbox and a demo config pointing at it.
Ctrl-C (or SIGTERM) stops them all; so does any one of them dying.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from redis import Redis
from rq.scheduler import RQScheduler

from bridge import config as config_module
from bridge.config import ConfigError
from bridge.embedded import EmbeddedRedis, free_port

SANDBOX_PORT = 8001


def demo_mode() -> bool:
    """No config named and none in the current directory: run the sandboxed demo."""
    return not os.environ.get("SYNCBRIDGE_CONFIG") and not Path(config_module.DEFAULT_PATH).exists()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address the web server listens on")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000")
def run(host: str, port: int) -> None:
    """Run Redis (embedded unless REDIS_URL is set), the web server and a worker together."""
    env = dict(os.environ)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis: EmbeddedRedis | None = None
    demo = demo_mode()
    if demo:
        env["SYNCBRIDGE_CONFIG"] = str(config_module.DEMO_PATH)
        env.setdefault("SYNCBRIDGE_SANDBOX_URL", f"http://127.0.0.1:{SANDBOX_PORT}")
    try:
        config = config_module.load(env.get("SYNCBRIDGE_CONFIG") or config_module.DEFAULT_PATH, env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not (env.get("REDIS_TLS_URL") or env.get("REDIS_URL")):
            data_dir = Path(env.get("SYNCBRIDGE_DATA_DIR", ".syncbridge"))
            redis = EmbeddedRedis(data_dir / "redis", port=free_port()).start()
            env["REDIS_URL"] = redis.url
            _clear_scheduler_locks(redis.url)
            click.echo(f"redis      {redis.address} (embedded, with a password; append-only file in {redis.data_dir})")
        if demo:
            sandbox_port = env["SYNCBRIDGE_SANDBOX_URL"].rsplit(":", 1)[-1].strip("/")
            children.append(("sandbox", _spawn(["sandbox", "--port", sandbox_port], env)))
            click.echo(f"sandbox    {env['SYNCBRIDGE_SANDBOX_URL']} (stand-ins of every provider)")
        children.append(("web", _spawn(["web", "--host", host, "--port", str(port)], env)))
        children.append(("worker", _spawn(["worker"], env)))
        click.echo(f"web        http://{host}:{port}  (config: {config.path}{', demo' if demo else ''})")
        sources = ", ".join(config.sources)
        click.echo(f"\nsyncbridge is running. Send a signed test push from another terminal:\n"
                   f"  .venv/bin/syncbridge send-test --source {next(iter(config.sources), 'github')}"
                   f"   (sources: {sources})\nCtrl-C stops everything.")
        _wait(children)
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        _stop(children)
        if redis is not None:
            redis.stop()


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


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bridge", *args], env=env)


def _wait(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    while True:
        for name, process in children:
            if process.poll() is not None:
                raise click.ClickException(f"{name} exited with status {process.returncode}; stopping the rest")
        time.sleep(0.5)


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in children:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, process in children:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
