"""The web app in another setting, or a floor app, for ``bench.receiver --sweep``.

``syncbridge web`` runs granian's RSGI interface with :class:`bridge.receiver.Receiver`. This
runs the same factory (same config, logging, Redis) with another number of processes, without
the group commit (each delivery its own round trip, one after another on the process's
connection), or with a log line for every delivery (also those that only join a waiting job).
The floors are what a server and a framework cost per request before any of syncbridge's work:
each reads the body and answers a small JSON body:

- ``--app rsgi``: a bare RSGI callable (what the edge is built on);
- ``--app asgi``: a bare ASGI callable under granian's ASGI interface;
- ``--app quart``: a Quart view (Pallets' Flask API on ASGI; bench/requirements.txt);
- ``--app flask``: a Flask view under granian's WSGI interface (threads).

Loopback only.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from granian.constants import Interfaces

from bridge.group_commit import GroupCommit

APP = "bench.serve:application"
INTERFACES = {"syncbridge": Interfaces.RSGI, "rsgi": Interfaces.RSGI, "asgi": Interfaces.ASGI,
              "quart": Interfaces.ASGI, "flask": Interfaces.WSGI}
ANSWER = b'{"delivery":"x","jobs":[]}'


class BareRSGI:
    """Read the body, answer 202: granian's RSGI interface alone."""

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await proto()
        proto.response_bytes(202, [("Content-Type", "application/json")], ANSWER)


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body, answer 202: granian's ASGI interface alone."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER})


def floor_quart() -> Any:
    from quart import Quart, jsonify, request

    app = Quart("floor")

    @app.post("/hooks/<source>")
    async def receive(source: str) -> Any:
        await request.get_data()
        return jsonify(delivery="x", jobs=[]), 202

    @app.get("/readyz")
    async def ready() -> Any:  # what the benchmark waits for
        return jsonify(redis="not used")

    return app


def floor_flask() -> Any:
    from flask import Flask, jsonify, request

    app = Flask("floor")

    @app.post("/hooks/<source>")
    def receive(source: str) -> Any:
        request.get_data(cache=False)
        return jsonify(delivery="x", jobs=[]), 202

    @app.get("/readyz")
    def ready() -> Any:  # what the benchmark waits for
        return jsonify(redis="not used")

    return app


def application() -> Any:
    """The app this process serves, chosen by BENCH_APP, BENCH_GROUP_COMMIT and BENCH_LOG_EVERY (set by main)."""
    kind = os.environ.get("BENCH_APP", "syncbridge")
    floors = {"rsgi": BareRSGI, "asgi": lambda: bare_asgi, "quart": floor_quart, "flask": floor_flask}
    if kind in floors:
        return floors[kind]()
    from bridge.commands import web

    receiver = web.application()
    if os.environ.get("BENCH_LOG_EVERY") == "1":  # a line for every delivery, joined ones too
        logging.getLogger("syncbridge.hooks").setLevel(logging.DEBUG)
    if os.environ.get("BENCH_GROUP_COMMIT", "1") == "0":
        receiver.commits = GroupCommit(receiver.commits._flush, max_batch=1)
    return receiver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--app", choices=tuple(INTERFACES), default="syncbridge")
    parser.add_argument("--no-group-commit", action="store_true")
    parser.add_argument("--log-every-delivery", action="store_true", help="log pushes that join a job too")
    args = parser.parse_args()
    os.environ.update(BENCH_APP=args.app, BENCH_GROUP_COMMIT="0" if args.no_group_commit else "1",
                      BENCH_LOG_EVERY="1" if args.log_every_delivery else "0")
    from bridge.commands.web import server

    options: dict[str, Any] = {"interface": INTERFACES[args.app]}
    if args.app == "flask":
        options["blocking_threads"] = args.threads
    server("127.0.0.1", args.port, args.workers, args.threads, APP, **options).serve()


if __name__ == "__main__":
    main()
