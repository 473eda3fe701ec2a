"""``syncbridge web``: the receiver and status routes under gunicorn."""

from __future__ import annotations

import os
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from bridge import config as config_module
from bridge.config import ConfigError


class WebServer(BaseApplication):
    """gunicorn with syncbridge's app factory, configured in code rather than a file."""

    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):  # called in each gunicorn worker
        from bridge.app import create_app
        from bridge.logs import configure
        from bridge.redact import Redactor

        config = config_module.load()
        configure(Redactor(config.secret_values()))
        return create_app(config)


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", 2)),
              show_default="$WEB_CONCURRENCY or 2", help="gunicorn worker processes")
@click.option("--threads", type=int, default=4, show_default=True, help="threads per worker process")
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Run the web server (gunicorn): POST /hooks/<source>, /jobs, /healthz, /readyz."""
    try:
        config_module.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    WebServer({
        "bind": f"{host}:{port}", "workers": workers, "threads": threads, "worker_class": "gthread",
        "timeout": 30, "graceful_timeout": 25, "keepalive": 5, "control_socket_disable": True,
        "accesslog": None, "errorlog": "-", "loglevel": "warning",
    }).run()
