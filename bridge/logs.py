"""Logging for every syncbridge process: one line per event, secrets scrubbed.

``SYNCBRIDGE_LOG_FORMAT=json`` gives one JSON object per line, with the fields a log call passes
in ``extra=`` (``CONTEXT_FIELDS``: the delivery, job, source, repo, target, provider, the job's
``status``, a provider call's ``http_status``, a ``duration`` in seconds), for log platforms that
index fields.

RQ says a line at INFO for every execution it starts and every Retry it schedules; a sync polls
its provider once per execution, so those would be a line or two per poll ("... 999999999
remaining"). They are written at DEBUG instead: our own lines say when a sync was triggered, and
how it ended.

One event is one line, whatever its text: a control character (a newline in a ref or in a
provider's message, an ANSI escape, a Unicode line separator) is written escaped, as ``\\n`` or
``\\x1b``, so nothing a sender controls can forge a line that looks like one of ours. That holds
for the message, the context fields and, in the text format, a traceback too (the JSON format
keeps a traceback's line breaks inside its ``exception`` string, where they cannot split the line).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
from typing import Any

from bridge import redact
from bridge.redact import Redactor

CONTEXT_FIELDS = ("delivery", "job", "source", "repo", "target", "provider", "status", "http_status", "duration")
# RQ's lines per execution and per Retry (rq.worker, rq.job), by their format strings: said at DEBUG.
PER_POLL = frozenset({"Worker %s: %s: %s", "Worker %s: %s: %s (%s)", "Job %s: scheduled for retry at %s, %s remaining",
                      "Job %s: enqueued for retry, %s remaining"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0 and C1 controls, DEL, Unicode line and paragraph separators, and the bidirectional overrides
# that make text read differently from how it is stored.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, keep: str = "") -> str:
    """``text`` with every control character (but those in ``keep``) written as an escape sequence."""
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escaped(m.group()), text)


def _escaped(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, the whole record (a traceback too) escaped onto one line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any context fields, escaped."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": escape(record.getMessage())}
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                value = getattr(record, name)
                entry[name] = escape(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = escape(self.formatException(record.exc_info), keep="\n")
        return json.dumps(entry, ensure_ascii=False)


def _per_poll_at_debug(record: logging.LogRecord) -> bool:
    """A logger filter: RQ's per-poll lines (``PER_POLL``) become DEBUG lines, shown only at that level."""
    if record.levelno == logging.INFO and record.msg in PER_POLL:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


class _ScrubbingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each formatted line scrubbed: message, arguments, fields and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact.PROCESS(super().format(record))


class _Handoff(QueueHandler):
    """Hands each record to the writer thread with its message merged, nothing else copied.

    The stdlib's ``prepare`` formats the whole record to make it picklable; within one process
    the writer can format it, so the request thread only pays for building the record.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None  # fixed now: the arguments may change later
        return record


def configure(redactor: Redactor | None = None, *, background: bool = False) -> None:
    """Log to stderr at ``SYNCBRIDGE_LOG_LEVEL`` (INFO), every line scrubbed by ``bridge.redact.PROCESS``.

    ``redactor``'s secrets (the config's) join the process's, which also learns every credential
    minted later.

    ``background`` (the web server) leaves scrubbing, formatting and writing to a thread of its
    own, off the request path: the receiver logs a line per job queued. Not for processes that fork
    after this (a forked child has no writer thread).
    """
    level = os.environ.get("SYNCBRIDGE_LOG_LEVEL", "INFO").upper()
    if redactor is not None:
        redact.PROCESS.merge(redactor)
    handler = _ScrubbingHandler(sys.stderr)
    if os.environ.get("SYNCBRIDGE_LOG_FORMAT", "").lower() == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter()
    handler.setFormatter(formatter)
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
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        if _per_poll_at_debug not in logger.filters:
            logger.addFilter(_per_poll_at_debug)
