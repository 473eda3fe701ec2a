"""The Mesa provider through a real RQ worker and the sandbox over HTTP: trigger, follow, end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis

from bridge.app import create_app
from bridge.config import Config
from tests.conftest import TOKEN, github_headers, mesa_config, sandbox_calls
from tests.driver import drive
from tests.test_hooks import push_body


@pytest.fixture
def setup(write_config: Callable[[str], Config], redis: Redis, sandbox: Any):
    def make(**target: Any) -> tuple[FlaskClient, Any]:
        config = write_config(mesa_config(sandbox.url, **target))
        return create_app(config, redis).test_client(), sandbox
    return make


def settings(sandbox: Any, provider: str, **values: Any) -> None:
    requests.put(f"{sandbox.url}/_sandbox/settings/{provider}", json=values, timeout=5).raise_for_status()


def faults(sandbox: Any, provider: str, *responses: dict[str, Any]) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults/{provider}", json={"responses": list(responses)},
                  timeout=5).raise_for_status()


def push(client: FlaskClient, delivery: str = "d-1", ref: str = "refs/heads/main") -> str:
    body = push_body(ref=ref)
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
    assert response.status_code == 202, response.get_json()
    return response.get_json()["jobs"][0]["id"]


def job(client: FlaskClient, job_id: str) -> dict[str, Any]:
    return client.get(f"/jobs/{job_id}").get_json()


def test_sync_is_triggered_and_followed_to_completion(setup, redis: Redis) -> None:
    client, sandbox = setup()
    settings(sandbox, "mesa", polls=2)
    job_id = push(client)
    intervals = drive(redis)
    record = job(client, job_id)
    assert record["status"] == "completed", record
    assert record["attempts"] == 1 and record["error"] is None
    assert record["started_at"] and record["finished_at"] and record["finished_at"] >= record["started_at"]
    assert record["remote"]["status"] == "completed" and record["remote"]["id"]
    calls = sandbox_calls(sandbox, "mesa")
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "/mesa/v1/acme/widgets/upstream/syncs"),
        ("GET", f"/mesa/v1/acme/widgets/upstream/syncs/{record['remote']['id']}"),
        ("GET", f"/mesa/v1/acme/widgets/upstream/syncs/{record['remote']['id']}"),
    ]
    assert calls[0]["json"] == {"direction": "pull"}
    assert calls[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert intervals == [1, 1]  # polls scheduled 1 s apart, not slept


def test_route_filters_become_mesa_ref_globs(write_config, redis: Redis, sandbox: Any) -> None:
    text = mesa_config(sandbox.url).replace("targets: [widgets-mesa]",
                                            "branches: [main, 'release/*']\n            tags: []\n"
                                            "            targets: [widgets-mesa]")
    client = create_app(write_config(text), redis).test_client()
    push(client)
    drive(redis)
    assert sandbox_calls(sandbox, "mesa")[0]["json"] == {"direction": "pull",
                                                          "ref_globs": {"branches": "{main,release/*}"}}


def test_provider_failure_ends_the_job_failed_with_its_reason(setup, redis: Redis) -> None:
    client, sandbox = setup()
    settings(sandbox, "mesa", polls=1, outcome="failed", error="upstream rejected the fetch")
    job_id = push(client)
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed"
    assert "upstream rejected the fetch" in record["error"]
    assert record["remote"]["status"] == "failed"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once_with_the_providers_message(setup, redis: Redis, status: int) -> None:
    client, sandbox = setup()
    faults(sandbox, "mesa", {"status": status})
    job_id = push(client)
    intervals = drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed" and intervals == []
    assert f"mesa answered {status} to POST /mesa/v1/acme/widgets/upstream/syncs" in record["error"]
    assert TOKEN not in record["error"]
    assert len(sandbox_calls(sandbox, "mesa")) == 1


def test_wrong_token_is_one_call_and_the_providers_reason(setup, redis: Redis) -> None:
    client, sandbox = setup(token="not-the-sandbox-token")
    job_id = push(client)
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed" and "answered 401" in record["error"]
    assert "not-the-sandbox-token" not in record["error"]
    assert len(sandbox_calls(sandbox, "mesa")) == 1


def test_5xx_and_timeouts_are_retried_with_exponential_backoff(setup, redis: Redis) -> None:
    client, sandbox = setup(retries=5, request_timeout=0.5)
    settings(sandbox, "mesa", polls=1)
    faults(sandbox, "mesa", {"status": 500}, {"status": 503}, {"timeout": 1.5}, {"status": 502})
    job_id = push(client)
    intervals = drive(redis)
    record = job(client, job_id)
    assert record["status"] == "completed", record
    assert record["attempts"] == 5  # four failed triggers, then the one that worked
    backoffs = intervals[:4]  # full jitter in [2^(n-1)/2, 2^(n-1)], at least 1 s
    assert all(max(1, 2 ** n // 2) <= b <= 2 ** n for n, b in enumerate(backoffs)), backoffs
    assert backoffs[3] >= 4


def test_429_honours_retry_after(setup, redis: Redis) -> None:
    client, sandbox = setup()
    settings(sandbox, "mesa", polls=1)
    faults(sandbox, "mesa", {"status": 429, "retry_after": 7})
    job_id = push(client)
    intervals = drive(redis)
    assert job(client, job_id)["status"] == "completed"
    assert intervals[0] == 7


def test_retries_are_bounded(setup, redis: Redis) -> None:
    client, sandbox = setup(retries=2)
    faults(sandbox, "mesa", *[{"status": 500}] * 5)
    job_id = push(client)
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed" and "gave up after 3 tries" in record["error"]
    assert len(sandbox_calls(sandbox, "mesa")) == 3


def test_an_operation_that_never_ends_fails_at_the_targets_timeout(setup, redis: Redis) -> None:
    client, sandbox = setup(timeout=1)
    settings(sandbox, "mesa", polls=1000)
    job_id = push(client)
    drive(redis, max_rounds=1, until_idle=False)  # triggered; the job's clock started
    redis.hset(f"syncbridge:job:{job_id}", "started_at", "2000-01-01T00:00:00.000Z")
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed" and "gave up after 1s" in record["error"], record


def test_a_failed_job_can_be_retried_with_the_api_token(setup, redis: Redis, monkeypatch) -> None:
    client, sandbox = setup()
    faults(sandbox, "mesa", {"status": 403})
    job_id = push(client)
    drive(redis)
    assert job(client, job_id)["status"] == "failed"
    assert client.post(f"/jobs/{job_id}/retry").status_code == 403  # protected mode: local, but no JSON body
    monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", "ops-token")
    client = create_app(client.application.extensions["syncbridge"].config, redis).test_client()
    auth = {"Authorization": "Bearer ops-token"}
    assert client.post(f"/jobs/{job_id}/retry").status_code == 401
    assert client.post("/jobs/unknown/retry", headers=auth).status_code == 404
    answer = client.post(f"/jobs/{job_id}/retry", headers=auth)
    assert answer.status_code == 202 and answer.get_json()["status"] == "queued"
    assert answer.get_json()["trigger"] == "retry" and answer.get_json()["error"] is None
    assert client.post(f"/jobs/{job_id}/retry", headers=auth).status_code == 409  # queued, not failed
    drive(redis)
    record = client.get(f"/jobs/{job_id}", headers=auth).get_json()
    assert record["status"] == "completed" and record["attempts"] == 2 and record["trigger"] == "retry"
