"""A local stand-in of one GitHub webhook and its delivery log (the hook-deliveries REST API).

It really delivers: ``push()`` POSTs a signed push to the hook URL and records the outcome, as
GitHub does, and ``POST .../deliveries/{id}/attempts`` delivers the same payload again with the
same ``X-GitHub-Delivery``. Listing is newest first, paginated with a cursor in ``Link``.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bridge.sources.signing import hmac_sha256


class GitHubStandin:
    def __init__(self, token: str, hook_url: str, secret: str, hook_path: str = "/repos/acme/widgets/hooks/42"):
        self.token, self.hook_url, self.secret, self.hook_path = token, hook_url, secret, hook_path
        self.deliveries: list[dict[str, Any]] = []  # oldest first
        self.payloads: dict[str, tuple[str, bytes]] = {}  # guid -> (event, body)
        self.redelivery_requests: list[int] = []
        self._ids = itertools.count(1000)
        self._urls = Map([Rule(f"{hook_path}/deliveries", endpoint="list", methods=["GET"]),
                          Rule(f"{hook_path}/deliveries/<int:delivery_id>/attempts", endpoint="redeliver",
                               methods=["POST"])])
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()

    def push(self, body: bytes, event: str = "push", guid: str | None = None, age: timedelta | None = None) -> str:
        """Deliver an event to the hook as GitHub would, and log the attempt."""
        guid = guid or str(uuid.uuid4())
        self.payloads[guid] = (event, body)
        self._deliver(guid, redelivery=False, age=age)
        return guid

    def _deliver(self, guid: str, redelivery: bool, age: timedelta | None = None) -> None:
        event, body = self.payloads[guid]
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "Content-Type": "application/json",
                   "X-Hub-Signature-256": "sha256=" + hmac_sha256(self.secret.encode(), body).hex()}
        try:
            status = requests.post(self.hook_url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException:
            status = 0  # GitHub shows "failed to connect" with no status code
        when = datetime.now(UTC) - (age or timedelta())
        self.deliveries.append({"id": next(self._ids), "guid": guid, "delivered_at": when.isoformat(),
                                "redelivery": redelivery, "duration": 0.01, "event": event, "action": None,
                                "status": "OK" if 200 <= status < 300 else "failed", "status_code": status,
                                "installation_id": None, "repository_id": 1})

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Response(json.dumps({"message": "Bad credentials"}), status=401, mimetype="application/json")
        endpoint, args = self._urls.bind_to_environ(request.environ).match()
        if endpoint == "redeliver":
            delivery = next(d for d in self.deliveries if d["id"] == args["delivery_id"])
            self.redelivery_requests.append(delivery["id"])
            self._deliver(delivery["guid"], redelivery=True)
            return Response("{}", status=202, mimetype="application/json")
        newest_first = sorted(self.deliveries, key=lambda d: d["delivered_at"], reverse=True)
        per_page = int(request.args.get("per_page", 30))
        start = int(request.args.get("cursor", 0))
        page = newest_first[start:start + per_page]
        response = Response(json.dumps(page), mimetype="application/json")
        if start + per_page < len(newest_first):
            response.headers["Link"] = (f'<{self.url}{self.hook_path}/deliveries?per_page={per_page}'
                                        f'&cursor={start + per_page}>; rel="next"')
        return response
