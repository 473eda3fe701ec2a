"""Logging for every syncbridge process: one line per event, secrets scrubbed.

``SYNCBRIDGE_LOG_FORMAT=json`` gives one JSON object per line, with the ``delivery``, ``job``,
``source`` and ``target`` a log call passes in ``extra=``, for log platforms that index fields.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue

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


class _Handoff(QueueHandler):
    """Hands each record to the writer thread with its message merged, nothing else copied.

    The stdlib's ``prepare`` formats the whole record to make it picklable; within one process
    the writer can format it, so the request thread only pays for building the record.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None  # fixed now: the arguments may change later
        return record


def configure(redactor: Redactor | None = None, *, background: bool = False) -> None:
    """Log to stderr at ``SYNCBRIDGE_LOG_LEVEL`` (INFO); every handler scrubs secrets.

    ``background`` (the web server) leaves scrubbing, formatting and writing to a thread of its
    own, off the request path: the receiver logs a line per job queued. Not for processes that fork
    after this (a forked child has no writer thread).
    """
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
    # No format here shows the caller's file, thread or process: skip collecting them for every
    # record (the logging HOWTO's "Optimization"); the receiver logs a line per job queued.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if background:
        records: SimpleQueue[logging.LogRecord] = SimpleQueue()
        writer = QueueListener(records, handler)
        writer.start()
        atexit.register(writer.stop)  # writes what is still queued
        root.handlers[:] = [_Handoff(records)]
    else:
        root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("rq.worker", "rq.scheduler", "rq.job", "rq.queue"):  # RQ adds its own handlers otherwise
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
