"""A tiny HTTP server that records what it is sent: the far end of notifications in tests."""

from __future__ import annotations

import json
import threading
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Receiver:
    """Records every request; answers the statuses in ``answers`` first, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @Request.application
    def _app(self, request: Request) -> Response:
        status = self.answers.pop(0) if self.answers else 200
        body = request.get_data()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "status": status,
                              "json": json.loads(body) if request.is_json else None, "body": body.decode()})
        return Response("{}", status=status, mimetype="application/json")

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
