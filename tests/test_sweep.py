"""Never miss a push: redelivery sweeps against a GitHub stand-in, and periodic reconcile syncs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from redis import Redis

from bridge.config import load
from bridge.embedded import EmbeddedRedis, free_port
from bridge.store import NEXT_SWEEP_KEY, Store, delivery_key
from tests.conftest import SECRET, TOKEN, environ_for
from tests.driver import drive
from tests.github_standin import GitHubStandin
from tests.test_end_to_end import running_bridge, wait_until_done
from tests.test_hooks import push_body
from workers.github_api import app_jwt
from workers.sweep import sweep_source

GITHUB_TOKEN = "ghs_sweep_token_for_tests"


def config_text(standin: GitHubStandin, sandbox_url: str, sweep_every: str = "1h", reconcile: str = "") -> str:
    return f"""
sources:
  github:
    kind: github
    secret: {SECRET}
    api:
      token: {GITHUB_TOKEN}
      hook: {{repo: acme/widgets, id: 42}}
      base_url: {standin.url}
      sweep_every: {sweep_every}
targets:
  widgets-mesa:
    provider: mesa
    base_url: {sandbox_url}/mesa/v1
    org: acme
    repo: widgets
    token: {TOKEN}
    min_interval: 0{f"{chr(10)}    reconcile_every: {reconcile}" if reconcile else ""}
routes:
  - source: github
    repo: acme/widgets
    targets: [widgets-mesa]
"""


@pytest.fixture
def standin() -> Iterator[GitHubStandin]:
    server = GitHubStandin(GITHUB_TOKEN, hook_url="http://127.0.0.1:9/hooks/github", secret=SECRET)
    yield server
    server.close()


def test_sweep_redelivers_exactly_the_missed_pushes_once(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis,
                                                         sandbox: Any, standin: GitHubStandin) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(config_text(standin, sandbox.url))
    config = load(path)
    failed = standin.push(push_body(after="1" * 40))  # bridge not reachable yet: status 0
    standin.push(b"{}", event="ping")  # a failed ping is not worth a redelivery
    old = standin.push(push_body(after="2" * 40), age=timedelta(days=4))  # past GitHub's retention
    store = Store(Redis.from_url(redis_server.url), config.retention)
    store.schedule(NEXT_SWEEP_KEY, "github", time.time() + 3600)  # this test sweeps by hand
    with running_bridge(path, redis_server.url, processes=1) as url:
        standin.hook_url = f"{url}/hooks/github"
        accepted = standin.push(push_body(after="3" * 40))  # 202, stored
        for n in range(120):  # several pages of deliveries that went fine
            standin.push(push_body(repo="acme/unrouted", after=f"{n:040x}"))  # 200: no route
        dry = sweep_source("github", config.sources["github"], store, dry_run=True)
        assert (dry.found, dry.redelivered, dry.missed) == (1, 0, [failed]) and standin.redelivery_requests == []
        report = sweep_source("github", config.sources["github"], store)
        assert report.listed == 123 and report.found == 1 and report.redelivered == 1 and report.failed == 0
        assert report.errors == []
        jobs = requests.get(f"{url}/deliveries/{failed}", timeout=5).json()["jobs"]
        assert wait_until_done(f"{url}/jobs/{jobs[0]['id']}")["status"] == "completed"
        again = sweep_source("github", config.sources["github"], store)  # now 202 and stored: nothing to do
        assert again.found == 0 and len(standin.redelivery_requests) == 1
        assert requests.get(f"{url}/deliveries/{old}", timeout=5).status_code == 404
        assert requests.get(f"{url}/deliveries/{accepted}", timeout=5).status_code == 200
        # Redis lost an accepted delivery: the sweep notices the 202 it no longer knows and asks again.
        Redis.from_url(redis_server.url).delete(delivery_key("github", accepted))
        lost = sweep_source("github", config.sources["github"], store)
        assert lost.missed == [accepted] and lost.redelivered == 1


def test_a_push_missed_while_the_bridge_was_down_is_synced_after_it_starts(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any, standin: GitHubStandin) -> None:
    port = free_port()
    standin.hook_url = f"http://127.0.0.1:{port}/hooks/github"
    missed = standin.push(push_body(after="9" * 40))  # the bridge is stopped
    assert standin.deliveries[-1]["status_code"] == 0
    path = tmp_path / "syncbridge.yml"
    path.write_text(config_text(standin, sandbox.url, sweep_every="1h"))
    with running_bridge(path, redis_server.url, processes=1, port=port, SYNCBRIDGE_TICK_SECONDS="1") as url:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and requests.get(f"{url}/deliveries/{missed}", timeout=5).status_code != 200:
            time.sleep(0.2)
        jobs = requests.get(f"{url}/deliveries/{missed}", timeout=5).json()["jobs"]
        record = wait_until_done(f"{url}/jobs/{jobs[0]['id']}")
    assert record["status"] == "completed" and record["after"] == "9" * 40
    assert standin.deliveries[-1]["redelivery"] is True and standin.deliveries[-1]["status_code"] == 202


def test_sweep_command_dry_run(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any,
                               standin: GitHubStandin) -> None:
    missed = standin.push(push_body(after="5" * 40))
    path = tmp_path / "syncbridge.yml"
    path.write_text(config_text(standin, sandbox.url))
    result = subprocess.run([sys.executable, "-m", "bridge", "sweep", "--dry-run"], capture_output=True, text=True,
                            env=environ_for(redis_server.url, path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "github: 1 deliveries listed, 1 missed, would redeliver 1, 0 failed" in result.stdout
    assert f"missed: {missed}" in result.stdout and standin.redelivery_requests == []
    assert GITHUB_TOKEN not in result.stdout + result.stderr
    elsewhere = environ_for(redis_server.url, tmp_path / "elsewhere.yml")  # --config wins over the variable
    as_json = subprocess.run([sys.executable, "-m", "bridge", "sweep", "--dry-run", "--json", "--config", str(path)],
                             capture_output=True, text=True, env=elsewhere, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    [report] = json.loads(as_json.stdout)
    assert (report["source"], report["listed"], report["found"], report["missed"], report["dry_run"]) == (
        "github", 1, 1, [missed], True)


def test_app_jwt_is_a_valid_rs256_token() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    token = app_jwt(12345, pem, now=1_700_000_000)
    import base64
    import json

    header, payload, signature = token.split(".")
    pad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
    assert json.loads(pad(header)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(pad(payload)) == {"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": "12345"}
    key.public_key().verify(pad(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), SHA256())


def test_reconcile_syncs_on_its_period_without_pushes(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis,
                                                      sandbox: Any, standin: GitHubStandin) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(config_text(standin, sandbox.url, reconcile="2s"))
    with running_bridge(path, redis_server.url, processes=1, SYNCBRIDGE_TICK_SECONDS="1") as url:
        deadline = time.monotonic() + 30
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            jobs = requests.get(f"{url}/jobs?status=completed", timeout=5).json()["jobs"]
            if len(jobs) >= 2:
                break
            time.sleep(0.2)
    assert len(jobs) >= 2, jobs
    assert all(job["trigger"] == "reconcile" and job["delivery"] is None for job in jobs)
    created = sorted(job["created_at"] for job in jobs)
    assert created[1] > created[0]


def test_a_reconcile_never_doubles_a_waiting_sync(write_config, redis: Redis, sandbox: Any) -> None:
    from bridge.app import create_app
    from tests.conftest import github_headers, mesa_config
    from workers.periodic import reconcile

    config = write_config(mesa_config(sandbox.url, reconcile_every="1h"))
    client = create_app(config, redis).test_client()
    body = push_body()
    waiting = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="w")).get_json()
    store = Store(redis, config.retention)
    assert reconcile(store, "widgets-mesa", time.time()) == []  # the push's sync is waiting
    drive(redis)
    [job_id] = reconcile(store, "widgets-mesa", time.time())
    assert job_id != waiting["jobs"][0]["id"]
    assert reconcile(store, "widgets-mesa", time.time()) == []  # and now the reconcile one waits
    drive(redis)
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "completed" and record["trigger"] == "reconcile" and record["ref"] is None


def test_dashboard_and_metrics_show_the_last_sweep_and_next_reconcile(write_config, redis: Redis,
                                                                      sandbox: Any) -> None:
    from bridge.app import create_app
    from bridge.store import NEXT_RECONCILE_KEY
    from tests.conftest import mesa_config

    config = write_config(mesa_config(sandbox.url, reconcile_every="6h"))
    store = Store(redis, config.retention)
    store.save_sweep("github", {"source": "github", "at": 1_800_000_000.0, "listed": 40, "found": 3,
                                "redelivered": 2, "failed": 1, "dry_run": False, "errors": [], "missed": []})
    store.schedule(NEXT_RECONCILE_KEY, "widgets-mesa", 1_800_021_600.0)
    client = create_app(config, redis).test_client()
    html = client.get("/").get_data(as_text=True)
    assert "3 missed, 2 redelivered, 1 failed" in html
    assert 'next reconcile: <time datetime="2027-01-15T14:00:00Z" title="2027-01-15T14:00:00Z">' in html
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'syncbridge_sweep_last{count="redelivered",source="github"} 2.0' in metrics
    assert 'syncbridge_reconcile_next_timestamp_seconds{target="widgets-mesa"} 1.8000216e+09' in metrics
