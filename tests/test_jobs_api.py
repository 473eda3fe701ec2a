"""The status routes: filters, 404s, retention, and the SYNCBRIDGE_API_TOKEN rule."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from redis import Redis

from bridge.app import create_app
from bridge.config import Config
from bridge.store import Store, delivery_key, job_key
from tests.conftest import github_headers, mesa_config
from tests.test_hooks import push_body

CONFIG = mesa_config("http://127.0.0.1:9") + """
          - source: github
            repo: acme/other
            targets: [widgets-mesa]
        """


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(CONFIG.replace("targets:\n", "retention: 1h\n        targets:\n", 1))


def post(client: FlaskClient, repo: str, delivery: str) -> dict:
    body = push_body(repo=repo)
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
    assert response.status_code == 202
    return response.get_json()["jobs"][0]


def test_list_filters_and_order(config: Config, redis: Redis) -> None:
    client = create_app(config, redis).test_client()
    first = post(client, "acme/widgets", "d1")
    Store(redis, 3600).finish(first["id"], "failed", error="boom")  # frees nothing: it was queued
    second = post(client, "acme/other", "d2")
    listed = client.get("/jobs").get_json()["jobs"]
    assert second["id"] != first["id"]  # the first was no longer waiting, so nothing coalesced
    assert [job["id"] for job in listed] == [second["id"], first["id"]]
    assert [job["id"] for job in client.get("/jobs?status=failed").get_json()["jobs"]] == [first["id"]]
    assert [job["repo"] for job in client.get("/jobs?repo=acme/other").get_json()["jobs"]] == ["acme/other"]
    assert client.get("/jobs?target=nope").get_json()["jobs"] == []
    assert len(client.get("/jobs?limit=1").get_json()["jobs"]) == 1
    assert client.get("/jobs?status=bogus").status_code == 400
    assert client.get("/jobs?limit=many").status_code == 400


def test_unknown_ids_are_404(config: Config, redis: Redis) -> None:
    client = create_app(config, redis).test_client()
    assert client.get("/jobs/doesnotexist").status_code == 404
    assert client.get("/deliveries/doesnotexist").status_code == 404


def test_records_expire_after_retention(config: Config, redis: Redis) -> None:
    client = create_app(config, redis).test_client()
    job = post(client, "acme/widgets", "d-ttl")
    assert 3500 < redis.ttl(job_key(job["id"])) <= 3600
    assert 3500 < redis.ttl(delivery_key("github", "d-ttl")) <= 3600
    Store(redis, config.retention).finish(job["id"], "completed")
    assert 3500 < redis.ttl(job_key(job["id"])) <= 3600


def test_api_token_guards_reads(config: Config, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", "read-token-42")
    client = create_app(config, redis).test_client()
    job = post(client, "acme/widgets", "d-auth")  # the hook itself needs no token: it is signed
    for url in (f"/jobs/{job['id']}", "/jobs", "/deliveries/d-auth"):
        denied = client.get(url)
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer read-token-42"}).status_code == 200
        basic = base64.b64encode(b"anyone:read-token-42").decode()
        assert client.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert "read-token-42" not in json.dumps(client.get("/jobs", headers={
        "Authorization": "Bearer read-token-42"}).get_json())


def test_dashboard_shows_jobs_and_targets(config: Config, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    client = create_app(config, redis).test_client()
    job = post(client, "acme/widgets", "d-dash")
    Store(redis, config.retention).finish(job["id"], "completed")
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert job["id"] in html and "widgets-mesa" in html and 'class="state completed"' in html
    data = client.get("/dashboard.json?status=completed").get_json()
    assert [j["id"] for j in data["jobs"]] == [job["id"]]
    assert data["targets"][0]["last_success"]["job"] == job["id"]
    monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", "dash-token")
    guarded = create_app(config, redis).test_client()
    assert guarded.get("/").status_code == 401
    basic = base64.b64encode(b"me:dash-token").decode()
    assert guarded.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
