"""The dashboard in a real browser: headless Chromium renders it and its script shows a real job."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from werkzeug.serving import make_server

from bridge.app import create_app
from tests.conftest import github_headers, mesa_config
from tests.driver import drive
from tests.test_hooks import push_body

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture
def dashboard(write_config, redis: Redis, sandbox: Any) -> Iterator[tuple[str, str]]:
    app = create_app(write_config(mesa_config(sandbox.url)), redis)
    client = app.test_client()
    body = push_body(after="abcdef1" + "0" * 33)
    job = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="ui-1")).get_json()
    drive(redis)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", job["jobs"][0]["id"]
    server.shutdown()


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


def test_the_dashboard_shows_the_job_and_refreshes_itself(dashboard: tuple[str, str], tmp_path: Path) -> None:
    url, job_id = dashboard
    result = chromium("--virtual-time-budget=5000", "--dump-dom", url, profile=tmp_path / "profile")
    dom = result.stdout
    assert f'data-id="{job_id}"' in dom, result.stderr[-2000:]
    assert 'class="state completed"' in dom and "widgets-mesa" in dom and "abcdef1" in dom
    assert "updated " in dom  # set by the page's script after it fetched dashboard.json
    shot = tmp_path / "dashboard.png"
    chromium("--window-size=1280,800", f"--screenshot={shot}", url, profile=tmp_path / "profile2")
    assert shot.exists() and shot.stat().st_size > 10_000
