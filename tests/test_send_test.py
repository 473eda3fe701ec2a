"""``syncbridge send-test`` against a real bridge (granian web + RQ worker + sandbox): what a user
types, and what they read when the bridge, the shell or the URL is not what it expects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.embedded import EmbeddedRedis
from tests.conftest import mesa_config
from tests.test_end_to_end import running_bridge

API_TOKEN = "send-test-api-token-0123456789"


def send_test(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
    environ.update(SYNCBRIDGE_CONFIG=str(config), **env)
    return subprocess.run([sys.executable, "-m", "bridge", "send-test", *args], capture_output=True, text=True,
                          env=environ, timeout=90)


@pytest.fixture
def config(tmp_path: Path, sandbox: Any) -> Path:
    path = tmp_path / "syncbridge.yml"
    path.write_text(mesa_config(sandbox.url).replace("\n        ", "\n"))
    return path


@pytest.fixture
def guarded_bridge(config: Path, redis_server: EmbeddedRedis, redis: Any) -> Iterator[str]:
    with running_bridge(config, redis_server.url, processes=1, SYNCBRIDGE_API_TOKEN=API_TOKEN) as url:
        yield url


def test_the_only_source_is_the_default_and_a_token_in_the_shell_follows_the_jobs(
        config: Path, guarded_bridge: str) -> None:
    sent = send_test(config, "--url", guarded_bridge, "--wait", "30", SYNCBRIDGE_API_TOKEN=API_TOKEN)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"POST {guarded_bridge}/hooks/github (github: acme/widgets refs/heads/main" in sent.stdout
    assert "-> 202" in sent.stdout and "done: 1 completed, 0 failed" in sent.stdout


def test_a_shell_without_the_bridges_token_reads_why_in_words(config: Path, guarded_bridge: str) -> None:
    sent = send_test(config, "--url", guarded_bridge, "--wait", "30")
    assert sent.returncode == 1
    assert "-> 202" in sent.stdout  # the push itself needs no token: it is signed
    assert "Traceback" not in sent.stderr and "KeyError" not in sent.stderr
    assert "SYNCBRIDGE_API_TOKEN is not set in this shell" in sent.stderr
    assert "export SYNCBRIDGE_API_TOKEN=<the bridge's token>" in sent.stderr and "401" in sent.stderr
    wrong = send_test(config, "--url", guarded_bridge, "--wait", "30", SYNCBRIDGE_API_TOKEN="not-the-token")
    assert wrong.returncode == 1 and "SYNCBRIDGE_API_TOKEN is not the bridge's" in wrong.stderr
    assert "not-the-token" not in wrong.stdout + wrong.stderr


def test_a_url_without_a_scheme_is_refused_with_the_fix(config: Path) -> None:
    sent = send_test(config, "--url", "localhost:8000")
    assert sent.returncode == 2
    assert "'localhost:8000' is not an http(s) URL" in sent.stderr
    assert "e.g. http://localhost:8000" in sent.stderr and "Traceback" not in sent.stderr


def test_several_sources_need_a_choice(config: Path) -> None:
    second = "  gitea: {kind: gitea, secret: a-gitea-webhook-secret}\n"
    config.write_text(config.read_text().replace("sources:\n", "sources:\n" + second))
    sent = send_test(config, "--url", "http://127.0.0.1:9")
    assert sent.returncode == 1
    assert "has 2 sources: choose one with --source (gitea, github)" in sent.stderr
