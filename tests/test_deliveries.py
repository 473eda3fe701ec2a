"""Delivery ids through the real server: per source, GitLab's signed ``webhook-id``, empty pushes.

A host's delivery ids are unique on that host only: the same id arriving on another source is new
work. A GitLab source with a signing token accepts only signed requests, known by their signed
``webhook-id``, so a captured one replayed inside the signature's window does no new work.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.embedded import EmbeddedRedis
from bridge.samples import bitbucket_cloud, bitbucket_server, signed_push, signing_secret
from bridge.sources.signing import hmac_sha256
from tests.conftest import TOKEN, github_headers
from tests.test_end_to_end import running_bridge
from tests.test_hooks import push_body

SECRET_A = "first-github-source-secret"
SECRET_B = "second-github-source-secret"
GITLAB_TOKEN = "gitlab-plain-secret-token"
SIGNING_TOKEN = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BITBUCKET_SECRET = "bitbucket-webhook-secret"


@pytest.fixture
def bridge(tmp_path: Path, redis_server: EmbeddedRedis, redis, sandbox: Any) -> Iterator[str]:
    config = tmp_path / "syncbridge.yml"
    config.write_text(f"""
sources:
  github: {{kind: github, secret: {SECRET_A}}}
  github-b: {{kind: github, secret: {SECRET_B}}}
  gitlab: {{kind: gitlab, secrets: [{GITLAB_TOKEN}, "{SIGNING_TOKEN}"]}}
  bbdc: {{kind: bitbucket-server, secret: {BITBUCKET_SECRET}}}
  bbc: {{kind: bitbucket-cloud, secret: {BITBUCKET_SECRET}}}
targets:
  widgets-mesa:
    provider: mesa
    base_url: {sandbox.url}/mesa/v1
    org: acme
    repo: widgets
    token: {TOKEN}
    min_interval: 0
routes:
  - {{source: github, repo: acme/widgets, targets: [widgets-mesa]}}
  - {{source: github-b, repo: acme/widgets, targets: [widgets-mesa]}}
  - {{source: gitlab, repo: acme/widgets, targets: [widgets-mesa]}}
""")
    with running_bridge(config, redis_server.url, processes=1) as url:
        yield url


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=10)


def job_ids(response: requests.Response) -> list[str]:
    return [job["id"] for job in response.json()["jobs"]]


def test_a_delivery_id_is_unique_per_source_not_across_sources(bridge: str) -> None:
    body = push_body(after="a" * 40)
    first = post(f"{bridge}/hooks/github", body, github_headers(body, delivery="shared-1", secret=SECRET_A))
    assert first.status_code == 202, first.text
    # the same id from another source is another push: new work, never "seen before"
    other = post(f"{bridge}/hooks/github-b", body, github_headers(body, delivery="shared-1", secret=SECRET_B))
    assert other.status_code == 202, other.text
    assert set(job_ids(other)).isdisjoint(job_ids(first))
    again = post(f"{bridge}/hooks/github", body, github_headers(body, delivery="shared-1", secret=SECRET_A))
    assert again.status_code == 200 and job_ids(again) == job_ids(first)

    merged = requests.get(f"{bridge}/deliveries/shared-1", timeout=5).json()
    assert {(job["id"], job["source"]) for job in merged["jobs"]} == {
        (job_ids(first)[0], "github"), (job_ids(other)[0], "github-b")}
    only_b = requests.get(f"{bridge}/deliveries/shared-1", params={"source": "github-b"}, timeout=5).json()
    assert [job["id"] for job in only_b["jobs"]] == job_ids(other)
    missing = requests.get(f"{bridge}/deliveries/shared-1", params={"source": "gitlab"}, timeout=5)
    assert missing.status_code == 404 and "gitlab" in missing.json()["error"]


def test_gitlab_with_a_signing_token_dedupes_signed_replays_and_refuses_the_plain_token(bridge: str) -> None:
    headers, body = signed_push("gitlab", "acme/widgets", "refs/heads/main", "0" * 40, "b" * 40,
                                signing_secret("gitlab", [GITLAB_TOKEN.encode(), SIGNING_TOKEN.encode()]))
    first = post(f"{bridge}/hooks/gitlab", body, headers)
    assert first.status_code == 202, first.text
    assert first.json()["delivery"] == headers["webhook-id"]
    # a captured request replayed inside the five-minute window, even with another Idempotency-Key
    # (which the signature does not cover), is the same delivery: no new work
    replay = post(f"{bridge}/hooks/gitlab", body, {**headers, "Idempotency-Key": "forged", "X-Gitlab-Event-UUID": "x"})
    assert replay.status_code == 200 and job_ids(replay) == job_ids(first)
    jobs = requests.get(f"{bridge}/jobs", params={"target": "widgets-mesa"}, timeout=5).json()["jobs"]
    assert [job["id"] for job in jobs] == job_ids(first)

    plain = {name: value for name, value in headers.items() if not name.startswith("webhook-")}
    refused = post(f"{bridge}/hooks/gitlab", body, {**plain, "X-Gitlab-Token": GITLAB_TOKEN})
    assert refused.status_code == 401 and "signing token" in refused.json()["error"]


@pytest.mark.parametrize(("source", "build"), [("bbdc", bitbucket_server), ("bbc", bitbucket_cloud)])
def test_a_bitbucket_push_that_changed_no_ref_is_ignored_not_refused(bridge: str, source: str, build: Any) -> None:
    headers, document = build("ACME/widgets", "refs/heads/main", "0" * 40, "c" * 40)
    if source == "bbdc":
        document["changes"] = []
    else:
        document["push"]["changes"] = []
    body = json.dumps(document).encode()
    signature = "sha256=" + hmac_sha256(BITBUCKET_SECRET.encode(), body).hex()
    answer = post(f"{bridge}/hooks/{source}", body,
                  {**headers, "Content-Type": "application/json", "X-Hub-Signature": signature})
    assert (answer.status_code, answer.json()) == (200, {"ignored": "no ref changed"})
