"""Isolation: a slow provider does not hold up another target (real web and worker processes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from bridge.embedded import EmbeddedRedis
from sandbox.server import SandboxServer
from tests.conftest import SECRET, TOKEN, github_headers
from tests.test_end_to_end import running_bridge, wait_until_done
from tests.test_hooks import push_body


def test_a_slow_provider_does_not_delay_another_target(tmp_path: Path, redis_server: EmbeddedRedis, redis,
                                                        sandbox: Any) -> None:
    with SandboxServer() as slow:
        requests.put(f"{slow.url}/_sandbox/settings/mesa", json={"latency": 4, "polls": 2}, timeout=5)
        requests.put(f"{sandbox.url}/_sandbox/settings/mesa", json={"polls": 2}, timeout=5)
        config = tmp_path / "syncbridge.yml"
        config.write_text(f"""
sources:
  github: {{kind: github, secret: {SECRET}}}
targets:
  slow: {{provider: mesa, base_url: "{slow.url}/mesa/v1", org: acme, repo: widgets, token: {TOKEN}}}
  fast: {{provider: mesa, base_url: "{sandbox.url}/mesa/v1", org: acme, repo: widgets, token: {TOKEN}}}
routes:
  - {{source: github, repo: acme/widgets, targets: [slow, fast]}}
""")
        with running_bridge(config, redis_server.url, processes=2) as url:
            time.sleep(1)  # let both worker processes register
            body = push_body()
            answer = requests.post(f"{url}/hooks/github", data=body, timeout=5,
                                   headers=github_headers(body, delivery="iso-1")).json()
            urls = {job["target"]: job["url"] for job in answer["jobs"]}
            started = time.monotonic()
            fast = wait_until_done(urls["fast"])
            fast_seconds = time.monotonic() - started
            slow_job = requests.get(urls["slow"], timeout=5).json()
    assert fast["status"] == "completed"
    # Three slow calls take 12 s; the fast target is done in its own ~2-3 s of polling.
    assert slow_job["status"] != "completed"
    print(f"\nfast target completed in {fast_seconds:.1f}s while the slow one was {slow_job['status']}")
