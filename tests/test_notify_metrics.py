"""Notifications (JSON POST and chat through apprise) and the Prometheus metrics."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import apprise
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from bridge.app import create_app
from bridge.store import Store, epoch
from tests.conftest import TOKEN, github_headers, mesa_config
from tests.driver import drive
from tests.receiver import Receiver
from tests.test_hooks import push_body
from workers.notify import message


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def config_with_notify(sandbox_url: str, url: str, on: str, **target: Any) -> str:
    return mesa_config(sandbox_url, **target) + f"""
        notify:
          - url: {url}/hook
            on: {on}
        """


def push(client, delivery: str) -> str:
    body = push_body()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
    assert response.status_code == 202
    return response.get_json()["jobs"][0]["id"]


def test_json_notifications_carry_the_job_as_the_status_route_shows_it(
        write_config, redis: Redis, sandbox: Any, receiver: Receiver) -> None:
    config = write_config(config_with_notify(sandbox.url, receiver.url, "[in_progress, completed, failed]"))
    client = create_app(config, redis).test_client()
    job_id = push(client, "n-1")
    drive(redis)
    final = client.get(f"/jobs/{job_id}").get_json()
    assert final["status"] == "completed"
    assert [r["json"]["status"] for r in receiver.requests] == ["in_progress", "completed"]
    assert receiver.requests[-1]["json"] == final
    assert all(TOKEN not in r["body"] for r in receiver.requests)


def test_a_failing_receiver_is_retried_and_never_changes_the_outcome(
        write_config, redis: Redis, sandbox: Any, receiver: Receiver) -> None:
    config = write_config(config_with_notify(sandbox.url, receiver.url, "[completed]"))
    client = create_app(config, redis).test_client()
    receiver.answers = [500, 502]
    job_id = push(client, "n-2")
    drive(redis)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "completed"
    assert [r["status"] for r in receiver.requests] == [500, 502, 200]


def test_on_filters_states(write_config, redis: Redis, sandbox: Any, receiver: Receiver) -> None:
    config = write_config(config_with_notify(sandbox.url, receiver.url, "[failed]"))
    client = create_app(config, redis).test_client()
    push(client, "n-3")
    drive(redis)
    assert receiver.requests == []


@pytest.mark.parametrize(("url", "service"), [
    ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", "NotifySlack"),
    ("https://discord.com/api/webhooks/123456789/abcdefghijklmnop", "NotifyDiscord"),
    ("https://chat.googleapis.com/v1/spaces/AAAA/messages?key=abc&token=def", "NotifyGoogleChat"),
    ("https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
     "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=xyz", "NotifyWorkflows"),
])
def test_chat_webhook_urls_go_to_their_apprise_plugin(url: str, service: str) -> None:
    chat = apprise.Apprise()
    assert chat.add(url)
    assert [type(server).__name__ for server in chat] == [service]
    assert not apprise.Apprise().add("https://ops.example/hooks/sync")  # -> plain JSON POST instead


def test_chat_message_says_what_happened() -> None:
    job = {"id": "abc123", "status": "failed", "repo": "acme/widgets", "ref": "refs/heads/main",
           "after": "0123456789abcdef" * 2 + "01234567", "target": "widgets-mesa", "provider": "mesa",
           "created_at": "2026-01-01T00:00:00.000Z", "started_at": "2026-01-01T00:00:01.000Z",
           "finished_at": "2026-01-01T00:00:13.500Z", "error": "mesa answered 403: forbidden"}
    title, body = message(job)
    assert title == "❌ widgets-mesa: acme/widgets@main failed"
    assert "acme/widgets refs/heads/main (0123456) → widgets-mesa (mesa): failed in 12.5 s" in body
    assert "Reason: mesa answered 403: forbidden" in body
    assert body.endswith("/jobs/abc123")


def test_metrics_count_webhooks_jobs_durations_and_queue_depth(write_config, redis: Redis, sandbox: Any) -> None:
    config = write_config(mesa_config(sandbox.url))
    client = create_app(config, redis).test_client()
    push(client, "m-1")
    bad = push_body()
    client.post("/hooks/github", data=bad, headers=github_headers(bad, secret="wrong"))
    before = client.get("/metrics").get_data(as_text=True)
    assert 'syncbridge_queue_depth{queue="syncbridge",state="queued"} 1.0' in before
    drive(redis)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'syncbridge_webhooks_received_total{outcome="accepted",source="github"} 1.0' in text
    assert 'syncbridge_webhooks_received_total{outcome="unauthorized",source="github"} 1.0' in text
    assert 'syncbridge_jobs_finished_total{status="completed",target="widgets-mesa"} 1.0' in text
    assert 'syncbridge_sync_duration_seconds_count{provider="mesa",target="widgets-mesa"} 1.0' in text
    assert 'syncbridge_queue_depth{queue="syncbridge",state="queued"} 0.0' in text


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian's prometheus package; .ci/run installs it)")
def test_metrics_pass_promtool_and_say_when_each_target_last_succeeded_and_failed(write_config, redis: Redis,
                                                                                   sandbox: Any) -> None:
    config = write_config(mesa_config(sandbox.url))
    client = create_app(config, redis).test_client()
    succeeded = push(client, "p-1")
    drive(redis)
    requests.post(f"{sandbox.url}/_sandbox/faults/mesa", json={"responses": [{"status": 403}]},
                  timeout=5).raise_for_status()
    failed = push(client, "p-2")
    drive(redis)
    store = Store(redis, 3600)
    text = client.get("/metrics").get_data(as_text=True)
    linted = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=30)
    assert linted.returncode == 0 and linted.stdout + linted.stderr == "", linted.stdout + linted.stderr
    samples = {f"{family.name}{sample.labels}": sample for family in text_string_to_metric_families(text)
               for sample in family.samples}
    ended = {"success": epoch(store.get(succeeded)["finished_at"]), "failure": epoch(store.get(failed)["finished_at"])}
    for outcome, at in ended.items():
        sample = samples[f"syncbridge_target_last_{outcome}_timestamp_seconds{{'target': 'widgets-mesa'}}"]
        assert sample.value == pytest.approx(at, abs=0.01)
    buckets = [s for s in samples.values() if s.name == "syncbridge_sync_duration_seconds_bucket"]
    assert {s.labels["target"] for s in buckets} == {"widgets-mesa"} and buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == 2.0
