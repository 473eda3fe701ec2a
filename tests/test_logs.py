"""Log lines: JSON when asked, context ids carried, secrets scrubbed whatever the format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from bridge.logs import JsonFormatter
from bridge.redact import RedactingFilter, Redactor


def record(message: str, *args: object, **extra: str) -> logging.LogRecord:
    rec = logging.LogRecord("syncbridge.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_context_fields() -> None:
    line = JsonFormatter().format(record("job=%s failed", "j1", job="j1", delivery="d1", target="t"))
    entry = json.loads(line)
    assert entry["message"] == "job=j1 failed" and entry["level"] == "warning"
    assert (entry["job"], entry["delivery"], entry["target"]) == ("j1", "d1", "t")


def test_secrets_are_scrubbed_from_messages_and_arguments() -> None:
    scrub = RedactingFilter(Redactor(["hunter2-token", "whsec-abcdef"]))
    rec = record("calling with %s and %r", "Bearer hunter2-token", {"secret": "whsec-abcdef"})
    scrub.filter(rec)
    assert "hunter2-token" not in rec.getMessage() and "whsec-abcdef" not in rec.getMessage()
    assert "***" in rec.getMessage()


def test_basic_auth_encodings_of_a_token_are_scrubbed_too() -> None:
    import base64

    encoded = base64.b64encode(b":my-azure-pat-123").decode()
    assert Redactor(["my-azure-pat-123"])(f"Authorization: Basic {encoded}") == "Authorization: Basic ***"


def test_worker_logs_json_when_asked(tmp_path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("sources: {}\ntargets: {}\n")
    code = ("from bridge.logs import configure; import logging; configure(); "
            "logging.getLogger('syncbridge.x').info('hello', extra={'job': 'j9'})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            env={"SYNCBRIDGE_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"})
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello" and entry["job"] == "j9" and entry["time"].endswith("Z")
