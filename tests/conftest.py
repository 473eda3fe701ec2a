"""Shared fixtures: a real redis-server on a free port, the provider sandbox over real HTTP,
configs written to disk, and helpers to sign payloads and drive a real RQ worker."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from bridge.config import Config, load
from bridge.embedded import EmbeddedRedis
from bridge.sources.signing import hmac_sha256

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "test-webhook-secret"
TOKEN = "sandbox-token"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Any]:
    from sandbox.server import SandboxServer

    server = SandboxServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Any) -> Any:
    """The sandbox, reset: default settings, no faults, empty call log."""
    requests.delete(f"{sandbox_server.url}/_sandbox/settings", timeout=5).raise_for_status()
    return sandbox_server


def sandbox_calls(sandbox: Any, provider: str) -> list[dict[str, Any]]:
    response = requests.get(f"{sandbox.url}/_sandbox/calls", params={"provider": provider}, timeout=5)
    response.raise_for_status()
    return response.json()["calls"]


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Config]:
    """Write a YAML config, point SYNCBRIDGE_CONFIG at it, and return it loaded."""

    def write(text: str) -> Config:
        path = tmp_path / "syncbridge.yml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setenv("SYNCBRIDGE_CONFIG", str(path))
        from workers.context import context

        context.cache_clear()
        return load(path)

    return write


def mesa_config(sandbox_url: str, **target: Any) -> str:
    """A GitHub source routed to one Mesa target on the sandbox (no spacing between syncs by default)."""
    target = {"min_interval": 0, **target}
    extra = "".join(f"\n    {key}: {json.dumps(value)}" for key, value in target.items())
    return f"""
        sources:
          github:
            kind: github
            secret: {SECRET}
        targets:
          widgets-mesa:
            provider: mesa
            base_url: {sandbox_url}/mesa/v1
            org: acme
            repo: widgets
            token: {TOKEN}{extra.replace(chr(10), chr(10) + '        ')}
        routes:
          - source: github
            repo: acme/widgets
            targets: [widgets-mesa]
        """


def github_headers(body: bytes, event: str = "push", delivery: str | None = None, secret: str = SECRET,
                   content_type: str = "application/json") -> dict[str, str]:
    headers = {"X-GitHub-Event": event, "Content-Type": content_type,
               "X-Hub-Signature-256": "sha256=" + hmac_sha256(secret.encode(), body).hex()}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def fixture_bytes(host: str, name: str) -> bytes:
    return (FIXTURES / host / name).read_bytes()


@pytest.fixture(autouse=True)
def _no_stray_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCBRIDGE_API_TOKEN", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_TLS_URL", raising=False)


def environ_for(redis_url: str, config_path: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    """Environment of a child process (web, worker) using this Redis and config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, SYNCBRIDGE_CONFIG=str(config_path), **extra)
    return env
