"""The web app under another server or setting, or a floor app, for ``bench.receiver --sweep``.

``syncbridge web`` always runs granian with syncbridge's app. This runs the same app factory
(same config, logging, Redis) under granian with other processes / threads / runtime mode, or
under gunicorn's gthread workers (the server syncbridge used before; ``pip install gunicorn``,
bench/requirements.txt), or without the group commit (every request its own round trip, on a
connection of its thread's own), or with a log line for every delivery (also those that only
join a waiting job). ``--app wsgi`` (a bare WSGI callable) and ``--app flask`` (a Flask view
that reads the body and answers JSON) are the floors: what the server alone, and the server
plus Flask, cost per request. Loopback only.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from bridge.queueing import Delivery, Enqueuer, Receipt

APP = "bench.serve:application"


def bare_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the body, answer 202 with a small JSON body: the server's own cost per request."""
    environ["wsgi.input"].read()
    body = b'{"delivery": "x", "jobs": []}'
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def bare_flask() -> Any:
    """A Flask app with one POST route that reads the body and answers JSON: Flask's own cost."""
    from flask import Flask, jsonify, request

    app = Flask("floor")

    @app.post("/hooks/<source>")
    def receive(source: str) -> Any:
        request.get_data(cache=False)
        return jsonify(delivery="x", jobs=[]), 202

    @app.get("/readyz")
    def ready() -> Any:
        return jsonify(redis="not used")

    return app


class OwnRoundTrips:
    """Stands in for the group commit: each thread commits its own delivery on its own connection."""

    def __init__(self, redis: Any, retention: float):
        self.redis, self.retention = redis, retention
        self.local = threading.local()

    def submit(self, delivery: Delivery) -> Receipt:
        if not hasattr(self.local, "enqueuer"):
            self.local.enqueuer = Enqueuer(self.redis, self.retention)
        return self.local.enqueuer.commit([delivery])[0]


def application() -> Any:
    """The app this process serves, chosen by BENCH_APP and BENCH_GROUP_COMMIT (set by main)."""
    kind = os.environ.get("BENCH_APP", "syncbridge")
    if kind == "wsgi":
        return bare_wsgi
    if kind == "flask":
        return bare_flask()
    from bridge.commands import web

    app = web.application()
    if os.environ.get("BENCH_LOG_EVERY") == "1":  # an INFO-like line for every delivery, joined ones too
        logging.getLogger("syncbridge.hooks").setLevel(logging.DEBUG)
    if os.environ.get("BENCH_GROUP_COMMIT", "1") == "0":
        bridge = app.extensions["syncbridge"]
        bridge.commits = OwnRoundTrips(bridge.redis, bridge.config.retention)
    return app


def serve_gunicorn(port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread", "timeout": 30, "keepalive": 5, "accesslog": None,
                               "errorlog": "-", "loglevel": "warning"}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return application()

    Gunicorn().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument("--runtime-mode", choices=("auto", "st", "mt"), default="auto", help="granian's")
    parser.add_argument("--app", choices=("syncbridge", "wsgi", "flask"), default="syncbridge")
    parser.add_argument("--no-group-commit", action="store_true")
    parser.add_argument("--log-every-delivery", action="store_true", help="log pushes that join a job too")
    args = parser.parse_args()
    os.environ.update(BENCH_APP=args.app, BENCH_GROUP_COMMIT="0" if args.no_group_commit else "1",
                      BENCH_LOG_EVERY="1" if args.log_every_delivery else "0")
    if args.server == "gunicorn":
        serve_gunicorn(args.port, args.workers, args.threads)
        return
    from granian.constants import RuntimeModes

    from bridge.commands.web import server

    mode = RuntimeModes(args.runtime_mode)
    server("127.0.0.1", args.port, args.workers, args.threads, APP, runtime_mode=mode).serve()


if __name__ == "__main__":
    main()
