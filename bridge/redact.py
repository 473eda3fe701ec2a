"""Scrubbing secrets out of text: provider messages, log lines, notifications.

Every configured secret (webhook secrets, tokens, passwords) is replaced wherever it appears,
whichever code path produced the text, so a provider that echoes a token back cannot leak it.
"""

from __future__ import annotations

import base64
import logging
import re

MASK = "***"


class Redactor:
    """Replaces each known secret (and its common encodings) with ``***``."""

    def __init__(self, secrets: list[str]):
        variants: set[str] = set()
        for secret in secrets:
            variants.add(secret)
            # Basic-auth headers carry base64(":" + token) or base64("user:" + password).
            for encoded in (base64.b64encode(f":{secret}".encode()), base64.b64encode(secret.encode())):
                variants.update({encoded.decode(), encoded.decode().rstrip("=")})
        ordered = sorted((v for v in variants if len(v) >= 4), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the formatted message (arguments included)."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.redactor(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
