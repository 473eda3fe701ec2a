"""Log lines: JSON when asked, context ids carried, one line per event and secrets scrubbed whatever the format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from bridge.logs import JsonFormatter


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
