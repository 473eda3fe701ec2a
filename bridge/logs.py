"""Logging for every syncbridge process: one line per event, secrets scrubbed.

``SYNCBRIDGE_LOG_FORMAT=json`` gives one JSON object per line, with the ``delivery``, ``job``,
``source`` and ``target`` a log call passes in ``extra=``, for log platforms that index fields.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from bridge.redact import RedactingFilter, Redactor

CONTEXT_FIELDS = ("delivery", "job", "source", "target")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(redactor: Redactor | None = None) -> None:
    """Log to stderr at ``SYNCBRIDGE_LOG_LEVEL`` (INFO); every handler scrubs secrets."""
    level = os.environ.get("SYNCBRIDGE_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("SYNCBRIDGE_LOG_FORMAT", "").lower() == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    if redactor is not None:
        handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("rq.worker", "rq.scheduler", "rq.job", "rq.queue"):  # RQ adds its own handlers otherwise
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
