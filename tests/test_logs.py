"""Log lines: JSON when asked, context ids carried, one line per event and secrets scrubbed whatever the format."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from bridge.embedded import EmbeddedRedis
from bridge.logs import JsonFormatter
from bridge.samples import signed_push
from bridge.sources import SOURCES
from tests.conftest import SECRET, TOKEN, mesa_config
from tests.test_reliability import wait_done, web_process, worker_process
from tests.test_worker_mesa import faults

FORGED = "\n2030-01-01 00:00:00,000 INFO syncbridge.worker: job=forged target=widgets-mesa completed"


def record(message: str, *args: object, **extra: str) -> logging.LogRecord:
    rec = logging.LogRecord("syncbridge.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_context_fields() -> None:
    line = JsonFormatter().format(record("job=%s failed", "j1", job="j1", delivery="d1", target="t"))
    entry = json.loads(line)
    assert entry["message"] == "job=j1 failed" and entry["level"] == "warning"
    assert (entry["job"], entry["delivery"], entry["target"]) == ("j1", "d1", "t")


def test_worker_logs_json_when_asked(tmp_path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("sources: {}\ntargets: {}\n")
    code = ("from bridge.logs import configure; import logging; configure(); "
            "logging.getLogger('syncbridge.x').info('hello', extra={'job': 'j9'})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            env={"SYNCBRIDGE_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"})
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello" and entry["job"] == "j9" and entry["time"].endswith("Z")


# A real process logs through bridge.logs.configure: what a sender controls (a ref, a provider's
# message, an exception) tries to forge a line of its own, and secrets, one from the config and one
# minted after start, sit in the message, a context field and a traceback.
FORGING_SCRIPT = r"""
import logging
from bridge import redact
from bridge.logs import configure
from bridge.redact import Redactor

configure(Redactor(["config-secret-Zx81"]))
redact.register("minted-token-Qp27", expires_at=2**40)
log = logging.getLogger("syncbridge.worker")
FORGED = "\n2030-01-01 00:00:00,000 INFO syncbridge.worker: job=forged completed"
log.info("queued %s", "refs/heads/x" + FORGED, extra={"job": "j1" + FORGED, "target": "t\u2028x"})
log.warning("provider said %s", "\x1b[2Jcleared\rback\u202egnp.exe config-secret-Zx81 minted-token-Qp27")
try:
    raise ValueError("bad ref" + FORGED + " minted-token-Qp27")
except ValueError:
    log.exception("crashed")
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_forged_line_stays_inside_its_own_and_secrets_are_masked(fmt: str) -> None:
    result = subprocess.run([sys.executable, "-c", FORGING_SCRIPT], capture_output=True, text=True, timeout=30,
                            env={"SYNCBRIDGE_LOG_FORMAT": fmt, "PATH": "/usr/bin:/bin"})
    lines = result.stderr.split("\n")
    assert lines[-1] == "" and len(lines) == 4, result.stderr  # three events, three lines: nothing forged
    assert "config-secret-Zx81" not in result.stderr and "minted-token-Qp27" not in result.stderr
    assert not any(char in result.stderr for char in "\r\x1b\u2028\u202e")
    if fmt == "json":
        queued, said, crashed = (json.loads(line) for line in lines[:3])
        assert queued["message"] == "queued refs/heads/x\\n2030-01-01 00:00:00,000 INFO syncbridge.worker: " \
                                    "job=forged completed"
        assert queued["job"].startswith("j1\\n2030") and queued["target"] == "t\\u2028x"
        assert said["message"] == "provider said \\x1b[2Jcleared\\rback\\u202egnp.exe *** ***"
        assert crashed["exception"].startswith("Traceback") and "\n" in crashed["exception"]  # kept, inside JSON
        assert crashed["exception"].endswith("ValueError: bad ref\n2030-01-01 00:00:00,000 INFO syncbridge.worker: "
                                             "job=forged completed ***")
    else:
        assert lines[0].endswith(" INFO syncbridge.worker: queued refs/heads/x\\n2030-01-01 00:00:00,000 INFO "
                                 "syncbridge.worker: job=forged completed")
        assert lines[1].endswith("provider said \\x1b[2Jcleared\\rback\\u202egnp.exe *** ***")
        assert " ERROR syncbridge.worker: crashed\\nTraceback (most recent call last):\\n" in lines[2]
        assert lines[2].endswith("ValueError: bad ref\\n2030-01-01 00:00:00,000 INFO syncbridge.worker: "
                                 "job=forged completed ***")


# -- Through the real server: hostile refs are refused, hostile provider words stay on their line --------------


def test_a_hostile_ref_is_refused_by_every_host_and_forges_no_line_of_the_real_server(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    target = {"provider": "mesa", "base_url": f"{sandbox.url}/mesa/v1", "org": "acme", "repo": "widgets",
              "token": TOKEN, "min_interval": 0}
    config = tmp_path / "syncbridge.yml"
    config.write_text(json.dumps({"sources": {kind: {"kind": kind, "secret": SECRET} for kind in SOURCES},
                                  "targets": {"widgets-mesa": target},
                                  "routes": [{"source": kind, "repo": "**", "targets": ["widgets-mesa"]}
                                             for kind in SOURCES]}))
    faults(sandbox, "mesa", {"status": 500, "message": f"upstream hiccup \x1b[2J\u202e{FORGED}"})
    with web_process(config, redis_server.url, tmp_path / "web.log") as (url, _), \
            worker_process(config, redis_server.url, tmp_path / "worker.log"):
        for kind in SOURCES:
            repo = "ACME/widgets" if kind == "bitbucket-server" else "acme/widgets"
            for ref, reason in (("refs/heads/main" + FORGED, "control character"), ("refs/heads/a..b", "'..'")):
                headers, body = signed_push(kind, repo, ref, "0" * 40, "a" * 40, SECRET.encode())
                answer = requests.post(f"{url}/hooks/{kind}", data=body, headers=headers, timeout=5)
                assert answer.status_code == 400 and reason in answer.json()["error"], (kind, answer.text)
        headers, body = signed_push("github", "acme/widgets", "refs/heads/feature/ünïcode-#1", "0" * 40, "b" * 40,
                                    SECRET.encode())
        accepted = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
        assert accepted.status_code == 202, accepted.text
        assert wait_done(url, accepted.json()["jobs"][0]["id"], 30)["status"] == "completed"  # after the 500
        assert [job["ref"] for job in requests.get(f"{url}/jobs", timeout=5).json()["jobs"]] == [
            "refs/heads/feature/ünïcode-#1"]
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("web", "worker")}
    assert "upstream hiccup \\x1b[2J\\u202e" in logs["worker"]  # the provider's words, escaped, on our line
    for name, text in logs.items():
        assert not re.search(r"^2030-01-01", text, re.MULTILINE), name
        assert not any(char in text for char in "\x1b\u202e\r"), name


# -- Through real processes: fields for log platforms, and RQ's per-poll chatter kept out of INFO -------------


def test_json_lines_carry_status_duration_provider_and_target_and_rq_says_nothing_per_poll(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    config = tmp_path / "syncbridge.yml"
    config.write_text(mesa_config(sandbox.url).replace("\n        ", "\n"))
    requests.put(f"{sandbox.url}/_sandbox/settings/mesa", json={"polls": 3}, timeout=5).raise_for_status()
    with web_process(config, redis_server.url, tmp_path / "web.log", SYNCBRIDGE_LOG_FORMAT="json") as (url, _), \
            worker_process(config, redis_server.url, tmp_path / "worker.log", SYNCBRIDGE_LOG_FORMAT="json"):
        headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, "e" * 40, SECRET.encode())
        job_id = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5).json()["jobs"][0]["id"]
        record = wait_done(url, job_id, 60)
    assert record["status"] == "completed"
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("job") == job_id]
    [triggered] = [line for line in ours if "triggered" in line["message"]]
    assert triggered["http_status"] == 201 and triggered["provider"] == "mesa" and triggered["duration"] >= 0
    [ended] = [line for line in ours if line["message"].endswith(" completed")]
    assert (ended["status"], ended["target"], ended["provider"], ended["repo"]) == (
        "completed", "widgets-mesa", "mesa", "acme/widgets")
    assert isinstance(ended["duration"], float) and ended["duration"] > 0
    chatter = [line["message"] for line in lines if line["logger"].startswith("rq.")
               and ("remaining" in line["message"] or (job_id in line["message"] and "syncbridge:" in line["message"]))]
    assert chatter == [], chatter  # polled 3 times: no "... 999999999 remaining", no per-execution line
