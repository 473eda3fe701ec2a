"""POST /hooks/<source> for GitHub: every answer of INTERFACE.md, against a real Redis."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from bridge.app import create_app
from bridge.config import Config
from bridge.embedded import EmbeddedRedis
from bridge.samples import github as github_push
from bridge.sources import github
from bridge.sources.signing import verify_digest
from bridge.store import delivery_key
from tests.conftest import SECRET, github_headers, mesa_config

SANDBOX_URL = "http://127.0.0.1:9"  # never called: these tests stop at the queue


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(mesa_config(SANDBOX_URL))


@pytest.fixture
def client(config: Config, redis: Redis) -> FlaskClient:
    return create_app(config, redis).test_client()


def push_body(repo: str = "acme/widgets", ref: str = "refs/heads/main", after: str = "a" * 40) -> bytes:
    return json.dumps(github_push(repo, ref, "0" * 40, after)[1]).encode()


def queued_ids(redis: Redis) -> list[str]:
    return Queue("syncbridge", connection=redis).job_ids


def test_githubs_published_test_vector() -> None:
    digest = bytes.fromhex("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    verify_digest([b"It's a Secret to Everybody"], b"Hello, World!", digest, "X-Hub-Signature-256")
    github.verify({"X-Hub-Signature-256": "sha256=" + digest.hex()}, b"Hello, World!",
                  [b"wrong", b"It's a Secret to Everybody"])


def test_signed_push_is_accepted_and_stored(client: FlaskClient, redis: Redis) -> None:
    body = push_body()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="d-1"))
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["delivery"] == "d-1"
    [job] = answer["jobs"]
    assert job["target"] == "widgets-mesa" and job["status"] == "queued"
    assert job["url"].endswith(f"/jobs/{job['id']}")
    assert queued_ids(redis) == [job["id"]]
    record = client.get(f"/jobs/{job['id']}").get_json()
    assert record == {**record, "status": "queued", "source": "github", "repo": "acme/widgets",
                      "ref": "refs/heads/main", "after": "a" * 40, "delivery": "d-1", "target": "widgets-mesa",
                      "mirror": None, "provider": "mesa", "attempts": 0, "started_at": None, "finished_at": None,
                      "remote": None, "trigger": "push", "error": None}
    assert list(record) == ["id", "status", "source", "repo", "ref", "after", "delivery", "target", "mirror",
                            "provider", "attempts", "created_at", "started_at", "finished_at", "remote", "trigger",
                            "error"]


def test_form_encoded_body_is_verified_on_its_raw_bytes(client: FlaskClient) -> None:
    body = urlencode({"payload": push_body().decode()}).encode()
    headers = github_headers(body, delivery="form-1", content_type="application/x-www-form-urlencoded")
    assert client.post("/hooks/github", data=body, headers=headers).status_code == 202


def test_redelivery_returns_the_same_jobs_and_enqueues_nothing(client: FlaskClient, redis: Redis) -> None:
    body = push_body()
    first = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="same"))
    again = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="same"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["jobs"] == first.get_json()["jobs"]
    assert len(queued_ids(redis)) == 1
    assert client.get("/deliveries/same").get_json()["jobs"][0]["id"] == first.get_json()["jobs"][0]["id"]


def test_push_without_delivery_id_is_deduplicated_by_body_digest(client: FlaskClient, redis: Redis) -> None:
    body = push_body()
    first = client.post("/hooks/github", data=body, headers=github_headers(body))
    again = client.post("/hooks/github", data=body, headers=github_headers(body))
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.get_json()["delivery"].startswith("sha256-")
    assert len(queued_ids(redis)) == 1


@pytest.mark.parametrize("mangle", [
    lambda h, b: ({**h, "X-Hub-Signature-256": "sha256=" + "0" * 64}, b),
    lambda h, b: ({k: v for k, v in h.items() if k != "X-Hub-Signature-256"}, b),
    lambda h, b: ({**h, "X-Hub-Signature-256": h["X-Hub-Signature-256"].replace("sha256=", "sha1=")}, b),
    lambda h, b: ({**h, "X-Hub-Signature-256": h["X-Hub-Signature-256"][:-2]}, b),
    lambda h, b: ({**h, "X-Hub-Signature-256": h["X-Hub-Signature-256"][:-1] + "z"}, b),
    lambda h, b: (h, b[:-1] + b"x"),
    lambda h, b: (h, b[:-10]),
    lambda h, b: (github_headers(b, secret="not-the-secret"), b),
], ids=["zeros", "missing", "wrong-prefix", "short", "non-hex", "byte-changed", "truncated", "wrong-secret"])
def test_bad_signature_is_401_and_stores_nothing(client: FlaskClient, redis: Redis, mangle) -> None:
    body = push_body()
    headers, sent = mangle(github_headers(body, delivery="bad"), body)
    response = client.post("/hooks/github", data=sent, headers=headers)
    assert response.status_code == 401
    assert SECRET not in response.get_data(as_text=True)
    assert queued_ids(redis) == [] and redis.keys("syncbridge:job:*") == redis.keys("syncbridge:delivery:*") == []


def test_a_flood_of_forged_deliveries_is_one_warning_not_one_line_each(
        client: FlaskClient, redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="syncbridge.hooks")
    body = push_body()
    for index in range(50):
        headers = github_headers(body, delivery=f"forged-{index}", secret="not-the-secret")
        assert client.post("/hooks/github", data=body, headers=headers).status_code == 401
    levels = [record.levelname for record in caplog.records if "rejected" in record.getMessage()]
    assert levels == ["WARNING"] + ["DEBUG"] * 49
    counted = redis.hget("syncbridge:metrics:webhooks_received", '{"outcome":"unauthorized","source":"github"}')
    assert counted == b"50"  # every one still counted


def test_chunked_body_over_the_limit_is_413(config: Config, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Content-Length the limit is counted while reading: 413, not the first bytes judged (401)."""
    monkeypatch.setenv("SYNCBRIDGE_MAX_BODY_BYTES", "1024")
    client = create_app(config, redis).test_client()
    body = push_body() + b" " * 2048
    headers = {**github_headers(body, delivery="chunked-big"), "Transfer-Encoding": "chunked"}
    response = client.post("/hooks/github", input_stream=io.BytesIO(body), headers=headers,
                           environ_base={"wsgi.input_terminated": True})  # as a WSGI server sets for chunked bodies
    assert response.status_code == 413
    assert queued_ids(redis) == [] and not redis.exists(delivery_key("github", "chunked-big"))


def test_rotated_secrets_are_all_accepted(write_config: Callable[[str], Config], redis: Redis) -> None:
    config = write_config(mesa_config(SANDBOX_URL).replace(
        f"secret: {SECRET}", "secrets: [new-webhook-secret-1, old-webhook-secret-1]"))
    client = create_app(config, redis).test_client()
    body = push_body()
    for secret, delivery in (("new-webhook-secret-1", "n"), ("old-webhook-secret-1", "o")):
        headers = github_headers(body, delivery=delivery, secret=secret)
        assert client.post("/hooks/github", data=body, headers=headers).status_code in (200, 202)


def test_ping_other_events_and_unrouted_pushes_are_200(client: FlaskClient, redis: Redis) -> None:
    ping = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    assert client.post("/hooks/github", data=ping, headers=github_headers(ping, event="ping")).status_code == 200
    issue = json.dumps({"action": "opened"}).encode()
    answer = client.post("/hooks/github", data=issue, headers=github_headers(issue, event="issues"))
    assert answer.status_code == 200 and "issues" in answer.get_json()["ignored"]
    other = push_body(repo="someone/else")
    answer = client.post("/hooks/github", data=other, headers=github_headers(other, delivery="x"))
    assert answer.status_code == 200 and "no route" in answer.get_json()["ignored"]
    assert queued_ids(redis) == []


def test_error_answers(client: FlaskClient, redis: Redis) -> None:
    body = push_body()
    assert client.post("/hooks/nope", data=body, headers=github_headers(body)).status_code == 404
    text = b"hello"
    assert client.post("/hooks/github", data=text, headers=github_headers(text, content_type="text/plain")
                       ).status_code == 415
    junk = b"{not json"
    assert client.post("/hooks/github", data=junk, headers=github_headers(junk)).status_code == 400
    wrong_shape = json.dumps({"ref": "refs/heads/main"}).encode()
    assert client.post("/hooks/github", data=wrong_shape, headers=github_headers(wrong_shape)).status_code == 400
    no_event = {k: v for k, v in github_headers(body).items() if k != "X-GitHub-Event"}
    assert client.post("/hooks/github", data=body, headers=no_event).status_code == 400
    assert queued_ids(redis) == []


def test_oversized_body_is_413_before_reading(config: Config, redis: Redis,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCBRIDGE_MAX_BODY_BYTES", "1024")
    client = create_app(config, redis).test_client()
    body = push_body() + b" " * 2048
    response = client.post("/hooks/github", data=body, headers=github_headers(body))
    assert response.status_code == 413
    assert queued_ids(redis) == []


def test_redis_down_is_503_and_nothing_is_lost_when_it_returns(config: Config, tmp_path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    client = create_app(config, Redis.from_url(server.url, socket_connect_timeout=0.5,
                                               socket_timeout=0.5)).test_client()
    body = push_body()
    server.kill()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="during-outage"))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    server.start()
    try:
        assert client.get("/readyz").status_code == 200
        again = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="during-outage"))
        assert again.status_code == 202  # the 503 stored nothing, so the host's retry is new work
    finally:
        server.stop()
