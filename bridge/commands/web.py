"""``syncbridge web``: the receiver and status routes under granian.

granian parses HTTP in Rust and calls the WSGI app on a pool of threads per process; against
gunicorn's gthread workers it served the same app at several times the rate on 2 cores
(docs/BENCHMARKS.md). The threads matter beyond slow requests: the deliveries they hold at once
share one Redis round trip (``bridge.group_commit``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
from flask import Flask
from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.server import Server

from bridge import config as config_module
from bridge.config import ConfigError

APP = "bridge.commands.web:application"
THREADS = 8  # per process; they mostly wait on Redis, and the more wait at once, the larger each batch


class NoThreadCountNote(logging.Filter):
    """Drops granian's note that more threads than 2 x cores "seems quite high".

    That holds for threads that compute; ours mostly wait for Redis, and waiting together is
    what lets the group commit share a round trip (docs/BENCHMARKS.md has the sweep).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads, which seems quite high" not in record.getMessage()


# granian's own logging, with the filter above; its handlers and formatters stay granian's.
GRANIAN_LOGGING = {
    "filters": {"no_thread_count_note": {"()": f"{__name__}.NoThreadCountNote"}},
    "loggers": {
        "_granian": {"handlers": ["console"], "level": "WARNING", "propagate": False,
                     "filters": ["no_thread_count_note"]},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def application() -> Flask:
    """What each granian process serves: the app, with logging set up first (secrets scrubbed)."""
    from bridge.app import create_app
    from bridge.logs import configure
    from bridge.redact import Redactor

    config = config_module.load()
    configure(Redactor(config.secret_values()), background=True)
    return create_app(config)


def server(host: str, port: int, workers: int, threads: int, target: str = APP, **options: Any) -> Server:
    """granian configured in code (``options`` override it: the benchmarks' variants).

    Heroku's SIGTERM stops it gracefully within its 30 s.
    """
    settings: dict[str, Any] = {
        "address": host, "port": port, "interface": Interfaces.WSGI, "factory": True, "workers": workers,
        "blocking_threads": threads, "backpressure": threads * 4, "http": HTTPModes.http1, "websockets": False,
        "log_level": LogLevels.warning, "log_dictconfig": GRANIAN_LOGGING, "respawn_failed_workers": True,
        "workers_kill_timeout": 25,
    }
    return Server(target, **{**settings, **options})


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", 2)),
              show_default="$WEB_CONCURRENCY or 2", help="processes")
@click.option("--threads", type=int, default=THREADS, show_default=True, help="threads per process")
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Run the web server (granian): POST /hooks/<source>, /jobs, /healthz, /readyz."""
    try:
        config_module.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    server(host, port, workers, threads).serve()
