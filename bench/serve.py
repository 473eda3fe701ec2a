"""``syncbridge web`` with another gunicorn worker class, or a floor app, for the receiver sweep.

``syncbridge web`` always runs gthread; this runs the same ``WebServer`` (same app factory,
logging and timeouts) with ``--worker-class`` sync or gthread, so ``bench.receiver --sweep``
compares like with like. ``--app wsgi`` (a bare WSGI callable) and ``--app flask`` (a Flask
view that reads the body and answers JSON) serve the same route under the same gunicorn
options: the floors that show what gunicorn and Flask alone cost per request. Loopback only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from bridge import config as config_module
from bridge.commands.web import WebServer


def bare_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the body, answer 202 with a small JSON body: gunicorn's own cost per request."""
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


class FloorServer(WebServer):
    """The same gunicorn options as ``syncbridge web``, serving a floor app instead of syncbridge."""

    def __init__(self, options: dict[str, Any], app: Any):
        self.floor_app = app
        super().__init__(options)

    def load(self) -> Any:
        return bare_flask() if self.floor_app is bare_flask else self.floor_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="gthread")
    parser.add_argument("--app", choices=("syncbridge", "wsgi", "flask"), default="syncbridge")
    args = parser.parse_args()
    options = {
        "bind": f"127.0.0.1:{args.port}", "workers": args.workers, "threads": args.threads,
        "worker_class": args.worker_class, "timeout": 30, "graceful_timeout": 25, "keepalive": 5,
        "control_socket_disable": True, "accesslog": None, "errorlog": "-", "loglevel": "warning",
    }
    if args.app == "syncbridge":
        config_module.load()
        WebServer(options).run()
    else:
        FloorServer(options, bare_wsgi if args.app == "wsgi" else bare_flask).run()


if __name__ == "__main__":
    main()
