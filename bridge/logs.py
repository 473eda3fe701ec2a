"""Logging for every syncbridge process: one line per event, secrets scrubbed."""

from __future__ import annotations

import logging
import os
import sys

from bridge.redact import RedactingFilter, Redactor


def configure(redactor: Redactor | None = None) -> None:
    """Log to stderr at ``SYNCBRIDGE_LOG_LEVEL`` (INFO); every handler scrubs secrets."""
    level = os.environ.get("SYNCBRIDGE_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if redactor is not None:
        handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
