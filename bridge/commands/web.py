"""``syncbridge web``: the public edge and the Flask app under granian.

granian parses HTTP in Rust and runs :class:`bridge.receiver.Receiver` (an RSGI app) on one
event loop per process, uvloop where installed: a client costs a socket and a coroutine, not a
thread, and every delivery that arrives during a Redis round trip shares the next one
(``bridge.group_commit``). One process uses about one core; ``--workers`` adds processes for
more cores, each with its own loop and memory (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from bridge import config as config_module
from bridge.config import ConfigError
from bridge.limits import Limits

if TYPE_CHECKING:
    from bridge.receiver import Receiver

APP = "bridge.commands.web:application"
THREADS = 4  # per process, for the API and pages only: bodies are read before a thread is taken

# granian's own logging; its handlers and formatters stay granian's.
GRANIAN_LOGGING = {
    "loggers": {
        "_granian": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def application() -> Receiver:
    """What each granian process serves: the edge in front of the app, logging set up first (secrets scrubbed).

    Imported here, in the worker processes, so granian's main process stays small.
    """
    from bridge.app import create_app
    from bridge.logs import configure
    from bridge.receiver import Receiver
    from bridge.redact import Redactor

    config = config_module.load()
    configure(Redactor(config.secret_values()), background=True)
    threads = int(os.environ.get("SYNCBRIDGE_WEB_THREADS", THREADS))
    return Receiver(create_app(config), Limits.from_environ(), threads)


def server(host: str, port: int, workers: int, threads: int = THREADS, target: str = APP,
           **options: Any) -> Server:
    """granian configured in code (``options`` override it: the benchmarks' variants).

    Heroku's SIGTERM stops it gracefully within its 30 s. The header deadline is granian's; the
    body deadline and the caps are the edge's (``Limits``). granian's own backpressure sits
    above the edge's cap, so a request over the cap meets the edge's prompt 503, not a queue.
    """
    limits = Limits.from_environ()
    settings: dict[str, Any] = {
        "address": host, "port": port, "interface": Interfaces.RSGI, "factory": True, "workers": workers,
        "backpressure": limits.max_in_flight * 2, "http": HTTPModes.http1, "websockets": False,
        "http1_settings": HTTP1Settings(header_read_timeout=int(limits.header_timeout * 1000)),
        "log_level": LogLevels.warning, "log_dictconfig": GRANIAN_LOGGING, "respawn_failed_workers": True,
        "workers_kill_timeout": 25,
    }
    os.environ["SYNCBRIDGE_WEB_THREADS"] = str(threads)  # the worker processes build their app from it
    return Server(target, **{**settings, **options})


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000",
              help="port to listen on")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", 1)),
              show_default="$WEB_CONCURRENCY or 1", help="processes, each an event loop using about one core")
@click.option("--threads", type=int, default=THREADS, show_default=True,
              help="threads per process for the API and pages (hooks are served on the event loop)")
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Run the web server (granian): POST /hooks/<source>, /jobs, /healthz, /readyz."""
    try:
        config_module.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    server(host, port, workers, threads).serve()
