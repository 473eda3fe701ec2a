"""Serving the sandbox over real HTTP: in a background thread for tests, in the foreground for the CLI.

Tests want real sockets (the bridge's timeouts, retries and headers are what is under test),
so ``SandboxServer`` runs werkzeug's threaded server in a daemon thread on a free port. A
request stuck in a deliberate ``timeout`` fault never blocks ``stop()``: handler threads are
daemons and are not joined.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.app import base_urls, create_app
from sandbox.state import SandboxState


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: the call log (``/_sandbox/calls``) has them all."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class SandboxServer:
    """The sandbox app on ``host:port`` (port 0: any free port) until ``stop()`` or the ``with`` ends."""

    def __init__(self, app: Flask | None = None, host: str = "127.0.0.1", port: int = 0):
        self.app = app if app is not None else create_app()
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        return self.app.extensions["sandbox"]

    def base_url(self, provider: str) -> str:
        """The ``base_url`` a bridge target of ``provider`` should use."""
        return base_urls(self.url)[provider]

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        # A short poll interval makes stop() quick (serve_forever checks for shutdown that often).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"sandbox:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the sandbox in the foreground (``syncbridge sandbox``) until Ctrl-C."""
    server = make_server(host, port, create_app(), threaded=True)
    url = f"http://{host}:{server.server_port}"
    for name, base_url in base_urls(url).items():
        print(f"{name:<14} {base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
