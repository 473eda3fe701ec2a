"""Serving the Flask app from the event-loop edge: a whole request in, a whole response out.

The edge reads every request body itself, under its deadlines, before any thread is involved;
only then does the request go to a small pool of threads that runs the WSGI app, whose views
call Redis synchronously. So a slow client costs a socket and a coroutine, never one of these
threads, and the pool only ever runs requests that are ready to be answered.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Response = tuple[int, list[tuple[str, str]], bytes]


def environ(scope: Any, body: bytes) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an RSGI request whose ``body`` has been read.

    The peer address is the socket's, as RSGI reports it; ProxyFix inside the app applies any
    ``X-Forwarded-*`` headers on top, as it would under any WSGI server.
    """
    client_host, _, client_port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    env: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_host.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client_host.strip("[]"),
        "REMOTE_PORT": client_port,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env[key] = value
        elif key != "CONTENT_LENGTH":  # the body has been read: its length is what it is
            key = "HTTP_" + key
            env[key] = f"{env[key]},{value}" if key in env else value  # repeated headers, as PEP 3333 joins them
    return env


def run(app: WSGIApp, env: dict[str, Any]) -> Response:
    """Call ``app`` and collect its whole answer (our views answer small bodies; none streams)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return _no_write

    iterable = app(env, start_response)
    try:
        body = b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    status, headers = started
    return int(status.split(" ", 1)[0]), list(headers), body


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the write() callable of WSGI is not supported: return the body instead")
