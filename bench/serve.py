"""``syncbridge web`` with another gunicorn worker class: the same app and options, for the sweep.

``syncbridge web`` always runs gthread; this runs the same ``WebServer`` (same app factory,
logging and timeouts) with ``--worker-class`` sync or gthread, so the sweep in
``bench/receiver.py --sweep`` compares like with like. Loopback only.
"""

from __future__ import annotations

import argparse

from bridge import config as config_module
from bridge.commands.web import WebServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="gthread")
    args = parser.parse_args()
    config_module.load()
    WebServer({
        "bind": f"127.0.0.1:{args.port}", "workers": args.workers, "threads": args.threads,
        "worker_class": args.worker_class, "timeout": 30, "graceful_timeout": 25, "keepalive": 5,
        "control_socket_disable": True, "accesslog": None, "errorlog": "-", "loglevel": "warning",
    }).run()


if __name__ == "__main__":
    main()
