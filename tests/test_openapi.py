"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route, public and free of secrets,
that a real server keeps to when schemathesis throws generated requests at it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate
from redis import Redis

from bridge.app import create_app
from bridge.config import Config
from bridge.embedded import EmbeddedRedis
from tests.conftest import SECRET, TOKEN, mesa_config
from tests.test_reliability import web_process

API_TOKEN = "openapi-api-token-0123456789"
METRICS_TOKEN = "openapi-metrics-token-0123456789"
# Every route of INTERFACE.md ("HTTP API"), and what the console adds.
INTERFACE = {("post", "/hooks/{source}"), ("get", "/jobs/{job_id}"), ("get", "/jobs"),
             ("get", "/deliveries/{delivery}"), ("post", "/jobs/{job_id}/retry"), ("get", "/healthz"),
             ("get", "/readyz"), ("get", "/metrics"), ("get", "/openapi.json"), ("get", "/")}
CONSOLE = {("get", "/deliveries"), ("get", "/dashboard.json")}
NOT_DOCUMENTED = {"/static/{filename}", "/favicon.ico"}  # files, not the API


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_the_document_is_valid_openapi_3_1_of_every_route_and_public(write_config: Callable[[str], Config],
                                                                     redis: Redis, sandbox: Any,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("SYNCBRIDGE_METRICS_TOKEN", METRICS_TOKEN)
    app = create_app(write_config(mesa_config(sandbox.url)), redis)
    answer = app.test_client().get("/openapi.json")  # no token: it describes routes, never data
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    document = answer.get_json()
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    assert document["openapi"].startswith("3.1")
    assert documented(document) == INTERFACE | CONSOLE
    routes = {(method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert {route for route in routes if route[1] not in NOT_DOCUMENTED} - {("get", "/hooks/{source}")} \
        == documented(document)  # GET on the hook route only says "405: webhooks are POSTed"
    assert document["components"]["schemas"]["SourceFilter"]["enum"] == ["", "github", "(unknown)"]
    text = answer.get_data(as_text=True)
    for secret in (API_TOKEN, METRICS_TOKEN, SECRET, TOKEN):
        assert secret not in text


def test_a_real_server_keeps_to_its_document_under_schemathesis(tmp_path: Path, redis_server: EmbeddedRedis,
                                                                 redis: Redis, sandbox: Any) -> None:
    """Schemathesis generates valid and invalid requests for every operation, with and without the
    token, and methods the document does not list; every answer must be one the document allows,
    and no 5xx. Deterministic (a fixed seed), and bounded: 30 examples per operation and phase."""
    config = tmp_path / "syncbridge.yml"
    config.write_text(mesa_config(sandbox.url).replace("\n        ", "\n"))
    with web_process(config, redis_server.url, tmp_path / "web.log", SYNCBRIDGE_API_TOKEN=API_TOKEN,
                     SYNCBRIDGE_LOG_LEVEL="WARNING") as (url, _):
        result = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "--no-color", "run", f"{url}/openapi.json",
             "-H", f"Authorization: Bearer {API_TOKEN}", "--max-examples", "30", "--seed", "1",
             "--generation-database", "none", "--request-timeout", "10"],
            capture_output=True, text=True, timeout=600)
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert re.search(r"Selected: (\d+)/\1", summary) and "failure" not in summary.split("SUMMARY")[-1], summary
    assert API_TOKEN not in (tmp_path / "web.log").read_text()
