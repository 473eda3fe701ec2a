"""Every host's push, signed as that host signs it, through the real web server and worker to a
completed sync; every tampered copy gets 401 and no job."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from bridge.embedded import EmbeddedRedis
from tests.conftest import TOKEN, sandbox_calls
from tests.test_end_to_end import running_bridge, wait_until_done
from tests.test_reliability import until
from tests.test_sources import EVENTS, HOSTS, PUSH_FIXTURE, PUSHES, SCHEMES, SECRET, TAMPERINGS, Scheme, fixture, signed

FIRST_PUSH = {kind: (name, event, repo, updates) for kind, name, event, repo, updates in reversed(PUSHES)
              if name.startswith(("push", "refs-changed", "repo-push")) and "delete" not in name
              and "tag" not in name}


class Running(NamedTuple):
    url: str
    config: Path


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
           sandbox_server: Any) -> Iterator[Running]:
    sources = "".join(f"\n  {kind}: {{kind: {kind}, secret: \"{SECRET.decode()}\"}}" for kind in HOSTS)
    targets = "".join(f"\n  to-{kind}: {{provider: mesa, base_url: \"{sandbox_server.url}/mesa/v1\", org: acme,"
                      f" repo: widgets, token: {TOKEN}, min_interval: 0}}" for kind in HOSTS)
    routes = "".join(f"\n  - {{source: {kind}, repo: \"**\", targets: [to-{kind}]}}" for kind in HOSTS)
    config = tmp_path_factory.mktemp("hosts") / "syncbridge.yml"
    config.write_text(f"sources:{sources}\ntargets:{targets}\nroutes:{routes}\n")
    with running_bridge(Path(config), redis_server.url) as url:
        yield Running(url, Path(config))


@pytest.mark.parametrize("kind", list(HOSTS))
def test_each_hosts_push_is_synced(bridge: Running, kind: str, sandbox_server: Any) -> None:
    name, event, repo, updates = FIRST_PUSH[kind]
    body = fixture(kind, name)
    headers = dict(signed(kind, body, event=event, delivery=f"e2e-{kind}").items())
    response = requests.post(f"{bridge.url}/hooks/{kind}", data=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    assert job["target"] == f"to-{kind}"
    record = wait_until_done(job["url"])
    assert record["status"] == "completed", record
    assert (record["source"], record["repo"]) == (kind, repo)
    assert (record["ref"], record["after"]) == (updates[-1][0], updates[-1][2])
    again = requests.post(f"{bridge.url}/hooks/{kind}", data=body, headers=headers, timeout=10)
    assert again.status_code == 200 and again.json()["jobs"][0]["id"] == job["id"]


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s.kind for s in SCHEMES])
def test_each_hosts_tampered_push_is_401_and_no_job(bridge: Running, scheme: Scheme, sandbox_server: Any) -> None:
    kind = scheme.kind
    body = fixture(kind, PUSH_FIXTURE[kind])
    before = len(sandbox_calls(sandbox_server, "mesa"))
    for name, tamper in sorted(TAMPERINGS.items()):
        headers, sent = tamper(scheme, signed(kind, body, event=EVENTS[kind], delivery=f"tampered-{kind}"), body)
        response = requests.post(f"{bridge.url}/hooks/{kind}", data=sent, headers=dict(headers.items()), timeout=10)
        assert response.status_code == 401, (kind, name, response.text)
    # No job; the delivery log (written within a second or two) has each attempt, refused.
    seen = until(lambda: (answer := requests.get(f"{bridge.url}/deliveries/tampered-{kind}?source={kind}",
                                                  timeout=5)).status_code == 200 and answer.json(), 10,
                 what="the refused attempts in the delivery log")
    assert seen["jobs"] == [] and {entry["status"] for entry in seen["received"]} == {401}
    assert len(sandbox_calls(sandbox_server, "mesa")) == before


@pytest.mark.parametrize("kind", list(HOSTS))
def test_send_test_works_for_every_kind_of_source(bridge: Running, kind: str) -> None:
    env = {**os.environ, "SYNCBRIDGE_CONFIG": str(bridge.config)}
    repo = "ACME/widgets" if kind == "bitbucket-server" else "acme/widgets"
    result = subprocess.run([sys.executable, "-m", "bridge", "send-test", "--source", kind, "--repo", repo,
                             "--url", bridge.url, "--wait", "30"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-> 202" in result.stdout and "done: 1 completed, 0 failed" in result.stdout
