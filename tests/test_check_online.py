"""`syncbridge check --online`: one harmless authenticated read per target, OK or the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bridge.config import DEMO_PATH
from tests.conftest import sandbox_calls


def check_online(config: Path, sandbox_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYNCBRIDGE_CONFIG": str(config), "SYNCBRIDGE_SANDBOX_URL": sandbox_url}
    return subprocess.run([sys.executable, "-m", "bridge", "check", "--online"], capture_output=True, text=True,
                          env=env, timeout=60)


def test_every_demo_target_answers_and_nothing_is_synced(sandbox: Any) -> None:
    result = check_online(DEMO_PATH, sandbox.url)
    assert result.returncode == 0, result.stdout + result.stderr
    for provider in ("mesa", "google-csr", "bitbucket-dc", "azure-devops", "codearts", "gitlab-mirror",
                     "gitea-mirror"):
        assert f"({provider}): OK" in result.stdout
    for provider in ("mesa", "google-csr", "bitbucket-dc", "azure-devops", "codearts", "gitlab-mirror",
                     "gitea-mirror"):
        assert all(call["method"] == "GET" for call in sandbox_calls(sandbox, provider)), provider


def test_a_refused_credential_is_reported_without_the_secret(tmp_path: Path, sandbox: Any) -> None:
    config = tmp_path / "syncbridge.yml"
    config.write_text(DEMO_PATH.read_text().replace("    token: sandbox-token\n  demo-google-csr",
                                                    "    token: wrong-token-1234\n  demo-google-csr"))
    result = check_online(config, sandbox.url)
    assert result.returncode == 1
    assert "demo-mesa (mesa): FAILED: mesa answered 401" in result.stdout
    assert "demo-gitea (gitea-mirror): OK" in result.stdout
    assert "wrong-token-1234" not in result.stdout + result.stderr
