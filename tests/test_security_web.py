"""Who may see the status routes and change state, and the headers every page carries.

Through the app (ProxyFix and the receiver included) with the client's socket address set as
the server would set it, then through a real ``syncbridge web`` process, seen from loopback and
from this machine's own network address.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from bridge.app import create_app
from bridge.config import Config
from bridge.embedded import EmbeddedRedis, free_port
from bridge.samples import signed_push
from bridge.store import Store
from tests.conftest import SECRET, environ_for, mesa_config
from tests.driver import drive
from tests.test_end_to_end import stop, wait_for

API_TOKEN = "api-token-0123456789abcdef"
METRICS_TOKEN = "metrics-token-0123456789ab"
ELSEWHERE = "192.0.2.7"  # TEST-NET-1: a client on another machine


@pytest.fixture
def app(write_config: Callable[[str], Config], redis: Redis) -> Callable[..., Flask]:
    """An app factory: ``make(api_token=..., metrics_token=...)`` reads them as the process would."""
    config = write_config(mesa_config("http://127.0.0.1:9"))

    def make(api_token: str | None = None, metrics_token: str | None = None) -> Flask:
        with pytest.MonkeyPatch.context() as env:
            for name, value in (("SYNCBRIDGE_API_TOKEN", api_token), ("SYNCBRIDGE_METRICS_TOKEN", metrics_token)):
                if value:
                    env.setenv(name, value)
                else:
                    env.delenv(name, raising=False)
            return create_app(config, redis)

    return make


def client_at(app: Flask, address: str) -> FlaskClient:
    """A client whose socket peer is ``address`` (REMOTE_ADDR, as the server sets it)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def push(client: FlaskClient, delivery: str) -> str:
    headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, "a" * 40, SECRET.encode())
    answer = client.post("/hooks/github", data=body, headers={**headers, "X-GitHub-Delivery": delivery})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobs"][0]["id"]


def guarded_urls(job_id: str, delivery: str) -> list[str]:
    return ["/", "/dashboard.json", "/jobs", f"/jobs/{job_id}", f"/deliveries/{delivery}", "/metrics", "/no-such-page"]


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_protected_mode_answers_this_machine_only(app: Callable[..., Flask]) -> None:
    bridge = app()
    remote = client_at(bridge, ELSEWHERE)
    job_id = push(remote, "pm-1")  # the hook is signed: open to anyone
    local = client_at(bridge, "127.0.0.1")
    for url in guarded_urls(job_id, "pm-1"):
        assert local.get(url).status_code == (404 if url == "/no-such-page" else 200), url
        for client, headers in ((remote, {}),
                                (client_at(bridge, "192.0.2.8"), bearer(API_TOKEN)),  # no token is set: none works
                                (local, {"X-Forwarded-For": "203.0.113.9"}),  # a proxy on this machine
                                (local, {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}),
                                (local, {"Forwarded": 'for="203.0.113.9:4711";proto=https'}),
                                (local, {"X-Real-IP": "203.0.113.9"}),
                                (local, {"X-Forwarded-For": "unknown"}),
                                (local, {"Host": "rebound.example:8000"})):  # DNS rebinding: a page's own name
            denied = client.get(url, headers=headers)
            assert denied.status_code == 401, (url, headers)
            why = denied.get_json()["error"]
            assert "SYNCBRIDGE_API_TOKEN" in why and "protected mode" in why
            assert denied.headers["Cache-Control"] == "no-store"
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert client_at(bridge, address).get("/jobs").status_code == 200, address
    for headers in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": 'for="[::1]:4711"'}, {"Host": "localhost:8000"},
                    {"Host": "127.0.0.1:8000"}, {"Host": "[::1]:8000"}, {"Host": "app.localhost"}):
        assert local.get("/jobs", headers=headers).status_code == 200, headers
    for url in ("/healthz", "/readyz", "/static/console.js", "/static/console.css", "/static/favicon.svg",
                "/favicon.ico"):
        assert remote.get(url).status_code == 200, url


def test_the_api_token_is_needed_by_everyone_and_the_metrics_token_opens_metrics_alone(
        app: Callable[..., Flask]) -> None:
    bridge = app(api_token=API_TOKEN, metrics_token=METRICS_TOKEN)
    job_id = push(bridge.test_client(), "tok-1")
    for address in ("127.0.0.1", ELSEWHERE):
        client = client_at(bridge, address)
        for url in guarded_urls(job_id, "tok-1"):
            denied = client.get(url)
            assert denied.status_code == 401 and denied.headers["WWW-Authenticate"] == 'Basic realm="syncbridge"'
            assert "SYNCBRIDGE_API_TOKEN" in denied.get_json()["error"]
            assert client.get(url, headers=bearer("wrong")).status_code == 401
            for headers in (bearer(API_TOKEN), basic(API_TOKEN)):
                assert client.get(url, headers=headers).status_code == (404 if url == "/no-such-page" else 200)
            opened_by_metrics_token = client.get(url, headers=bearer(METRICS_TOKEN)).status_code
            assert opened_by_metrics_token == (200 if url == "/metrics" else 401), url
        assert client.get("/metrics", headers=basic(METRICS_TOKEN)).status_code == 200
        assert client.post(f"/jobs/{job_id}/retry", headers=bearer(METRICS_TOKEN), json={}).status_code == 401


def test_in_protected_mode_the_metrics_token_opens_metrics_from_elsewhere(app: Callable[..., Flask]) -> None:
    remote = client_at(app(metrics_token=METRICS_TOKEN), ELSEWHERE)
    assert remote.get("/metrics").status_code == 401
    assert remote.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 200
    assert remote.get("/jobs", headers=bearer(METRICS_TOKEN)).status_code == 401


@pytest.mark.parametrize("api_token", [API_TOKEN, None], ids=["token", "protected-mode"])
def test_state_changes_need_bearer_or_a_same_origin_json_request(app: Callable[..., Flask], api_token: str | None,
                                                                 redis: Redis) -> None:
    """An unknown job's retry answers 404 once the request got past the guard, 403 when it did not."""
    client = client_at(app(api_token=api_token), "127.0.0.1")
    ambient = basic(api_token) if api_token else {}  # what a browser brings to any request
    url = "/jobs/no-such-job/retry"
    forged = [
        ({**ambient, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
         '{"x": "=y"}'),  # the auto-submitted text/plain form
        ({**ambient, "Content-Type": "application/x-www-form-urlencoded"}, "a=b"),
        ({**ambient, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, "{}"),
        ({**ambient, "Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, "{}"),
        ({**ambient, "Content-Type": "application/json", "Origin": "http://evil.example"}, "{}"),
        ({**ambient, "Content-Type": "application/json", "Origin": "null"}, "{}"),
        (ambient, ""),
    ]
    for headers, body in forged:
        refused = client.post(url, headers=headers, data=body)
        assert refused.status_code == 403, headers
        assert "Bearer" in refused.get_json()["error"] and "same-origin JSON" in refused.get_json()["error"]
    allowed = [
        {**ambient, "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {**ambient, "Content-Type": "application/json", "Origin": "http://localhost"},  # older browsers
        {**ambient, "Content-Type": "application/json"},  # not a browser: the CLI, curl
    ]
    if api_token:  # Bearer is never attached by a browser on its own: any shape, from anywhere
        allowed.append({**bearer(api_token), "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"})
    for headers in allowed:
        assert client.post(url, headers=headers, data="{}").status_code == 404, headers
    job_id = push(client, "retry-1")
    Store(redis, 3600).finish(job_id, "failed", error="boom")
    retried = client.post(f"/jobs/{job_id}/retry", json={}, headers={**ambient, "Sec-Fetch-Site": "same-origin"})
    assert retried.status_code == 202 and retried.get_json()["trigger"] == "retry"


def test_pages_carry_a_policy_without_inline_script_and_are_never_cached(app: Callable[..., Flask],
                                                                         redis: Redis) -> None:
    client = app().test_client()
    job_id = push(client, "h-1")
    Store(redis, 3600).finish(job_id, "failed", error="<script>alert(1)</script>")
    page = client.get("/")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1 and '<script src="/static/console.js" defer>' in html  # nothing inline
    assert "<style" not in html and ' style="' not in html
    assert f'<button type="button" data-retry="{job_id}">Retry</button>' in html
    for url in ("/", "/dashboard.json", "/jobs", f"/jobs/{job_id}", "/metrics"):
        answer = client.get(url)
        assert answer.headers["Cache-Control"] == "no-store" and answer.headers["X-Content-Type-Options"] == "nosniff"


def this_machines_network_address() -> str | None:
    """An address of this machine that is not loopback (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@contextmanager
def web_on_all_interfaces(config: str | Path, redis_url: str, log: Path, **env: str) -> Iterator[int]:
    """``syncbridge web`` as a real process on 0.0.0.0, as it listens by default; yields its port."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bridge", "web", "--host", "0.0.0.0", "--port", str(port),
                                    "--workers", "1"], env=environ_for(redis_url, config, **env), stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
        yield port
    finally:
        stop(process)


@pytest.fixture
def web(tmp_path: Path, write_config: Callable[[str], Config], redis_server: EmbeddedRedis, redis: Redis,
        sandbox: Any) -> Iterator[int]:
    config = write_config(mesa_config(sandbox.url))  # SYNCBRIDGE_CONFIG too, for drive()'s worker
    with web_on_all_interfaces(config.path, redis_server.url, tmp_path / "web.log") as port:
        yield port


def test_a_real_web_process_in_protected_mode(web: int, redis: Redis, sandbox: Any, tmp_path: Path) -> None:
    """Loopback reads and retries with no token (the CLI too); a forwarded client gets 401."""
    local = f"http://127.0.0.1:{web}"
    requests.post(f"{sandbox.url}/_sandbox/faults/mesa", json={"responses": [{"status": 403}]},
                  timeout=5).raise_for_status()
    headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, "b" * 40, SECRET.encode())
    job_id = requests.post(f"{local}/hooks/github", data=body, headers=headers, timeout=10).json()["jobs"][0]["id"]
    drive(redis)  # the sync fails: the provider answers 403
    assert requests.get(f"{local}/jobs/{job_id}", timeout=10).json()["status"] == "failed"
    denied = requests.get(f"{local}/jobs/{job_id}", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert denied.status_code == 401 and "SYNCBRIDGE_API_TOKEN" in denied.json()["error"]
    cli = subprocess.run([sys.executable, "-m", "bridge", "retry", job_id, "--url", local], capture_output=True,
                         text=True, timeout=60, env=environ_for("redis://unused", tmp_path / "none.yml"))
    assert cli.returncode == 0, cli.stderr
    assert requests.get(f"{local}/jobs/{job_id}", timeout=10).json()["trigger"] == "retry"


@pytest.mark.skipif(this_machines_network_address() is None, reason="this machine has no network address but loopback")
def test_a_real_web_process_refuses_a_peer_on_the_network(web: int) -> None:
    outside = f"http://{this_machines_network_address()}:{web}"
    for url in ("/", "/jobs", "/metrics", "/dashboard.json"):
        denied = requests.get(f"{outside}{url}", timeout=10)
        assert denied.status_code == 401 and "SYNCBRIDGE_API_TOKEN" in denied.json()["error"], url
    assert requests.get(f"{outside}/healthz", timeout=10).status_code == 200
    headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, "c" * 40, SECRET.encode())
    assert requests.post(f"{outside}/hooks/github", data=body, headers=headers, timeout=10).status_code == 202


def test_compose_publishes_the_web_port_on_loopback_only_and_redis_not_at_all() -> None:
    services = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())["services"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "ports" not in services["redis"] and "ports" not in services["worker"]
