"""Scrubbing secrets out of everything that leaves the process.

A secret must not leave through any channel, whichever code path produced the text: a provider
that quotes our token back in its error, a traceback, a URL with a password in it. So scrubbing
is not left to each call site; each way out of the process has one choke point, and every
secret the process holds is registered in one place, :data:`PROCESS`.

The ways out, and where each is scrubbed:

- **Redis** (what users later read through ``/jobs``, the dashboard, job pages and
  notifications): :func:`bridge.store.encode` scrubs every field of a job record it writes, and
  ``Store.save_sweep`` every sweep report; the worker scrubs RQ's own failure record
  (``workers.worker.SyncWorker``) and the notification snapshots it queues. Scrubbing before
  storing means the views need no scrubbing of their own, and a new view cannot forget it.
- **Log lines**: the one handler :func:`bridge.logs.configure` installs scrubs each formatted
  line, so the message, its arguments, the context fields and tracebacks are all covered.
- **Notifications**: ``workers.notify.send`` scrubs the chat text and the JSON body right before
  they go out (they are built from the stored record, scrubbed already: this is the backstop).
- **Command output** (``syncbridge check --online``, ``syncbridge sweep``): scrubbed where echoed.

Text is scrubbed before anything cuts it short (``workers.providers.base.describe_error``): a
secret cut in two no longer matches, and its first half would go out.

The secrets: every process registers its config's (:meth:`bridge.config.Config.secret_values`)
when it starts (``bridge.logs.configure``, ``workers.context.context``), and whatever mints a
credential (an IAM or OAuth access token, a signed JWT assertion) registers it before its first
use, with its expiry, so the scrubber forgets it once it is worthless.

Each secret is masked as written and in the forms it takes on the way out: percent-encoded (in
URLs and forms, either hex case), JSON-escaped (once or twice), and base64 (a Basic-auth
header, whatever user name precedes it). The password, or token, in a URL's userinfo
(``https://user:pass@host``) is masked too, known or not.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import ahocorasick_rs

MASK = "***"
MIN_LENGTH = 4  # anything shorter would mask ordinary words
FORGET_AFTER = 3600.0  # a minted token is masked this long after it expires, then forgotten
# scheme://userinfo@ : everything up to the last "@" before the host (a sloppy password may hold "@").
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]+(?:@[^\s/?#@]+)*@")
_PERCENT = re.compile(r"%[0-9A-F]{2}")
_URL_SAFE = ("", "/", "!'()*~")  # quote's defaults and JavaScript's encodeURIComponent


class Redactor:
    """Replaces each known secret (in the forms it leaves in) and any URL userinfo with ``***``.

    The forms are searched for all at once with an Aho-Corasick automaton (``ahocorasick-rs``):
    a log line costs about a microsecond whether there are ten forms or thousands, where a regular
    expression alternating them cost 20 µs for a dozen secrets. Thread-safe: ``add`` builds a new
    automaton and swaps it in, so a call in progress keeps the old one.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._expiry: dict[str, float | None] = {}
        self._matcher: ahocorasick_rs.AhoCorasick | None = None
        self.add(*secrets)

    def add(self, *secrets: str, expires_at: float | None = None) -> None:
        """Mask ``secrets`` from now on; a minted one is forgotten ``FORGET_AFTER`` after ``expires_at``."""
        with self._lock:
            known = set(self._expiry)
            for secret in secrets:
                if len(secret) >= MIN_LENGTH:
                    before = self._expiry.get(secret, 0.0)
                    self._expiry[secret] = None if before is None or expires_at is None else max(before, expires_at)
            now = time.time()
            for secret, until in list(self._expiry.items()):
                if until is not None and until + FORGET_AFTER < now:
                    del self._expiry[secret]
            if self._expiry.keys() != known:
                variants = {form for secret in self._expiry for form in forms(secret) if len(form) >= MIN_LENGTH}
                self._matcher = ahocorasick_rs.AhoCorasick(
                    variants, matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST) if variants else None

    def merge(self, other: Redactor) -> None:
        """Mask ``other``'s secrets too, with their expiries (the lasting ones in one rebuild)."""
        secrets = list(other._expiry.items())
        self.add(*(secret for secret, until in secrets if until is None))
        for secret, until in secrets:
            if until is not None:
                self.add(secret, expires_at=until)

    def __call__(self, text: str) -> str:
        matcher = self._matcher
        if matcher is not None:
            pieces, done = [], 0
            for _, start, end in matcher.find_matches_as_indexes(text):
                pieces += (text[done:start], MASK)
                done = end
            if pieces:
                text = "".join(pieces) + text[done:]
        return _USERINFO.sub(r"\1" + MASK + "@", text) if "://" in text else text

    def scrub(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed, through dicts (keys too), lists and tuples."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.scrub(key): self.scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(item) for item in value)
        return value


PROCESS = Redactor()
"""This process's secrets: the config's and every credential minted since it started."""


def register(*secrets: str, expires_at: float | None = None) -> None:
    """Mask ``secrets`` everywhere this process lets text out, from now on (see the module docstring)."""
    PROCESS.add(*secrets, expires_at=expires_at)


def scrub(value: Any) -> Any:
    """``value`` (a string, or dicts and lists of them) with every secret of this process masked."""
    return PROCESS.scrub(value)


def forms(secret: str) -> set[str]:
    """The texts ``secret`` can leave as: itself or base64'd, then JSON-escaped, then percent-encoded.

    Layered, because encodings stack on the way out: a Basic-auth header (base64) quoted in a
    JSON error, a JSON request body quoted in a link (percent-encoded).
    """
    raw = secret.encode()
    found = {secret, *_base64_runs(raw)}
    for prefixed in (raw, b":" + raw):  # a bare token, a Basic-auth header without a user name
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(prefixed).decode()
            found.update({encoded, encoded.rstrip("=")})
    for text in list(found):
        for ascii_only in (True, False):
            escaped = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
            found.update({escaped, escaped.replace("/", "\\/"), json.dumps(escaped, ensure_ascii=ascii_only)[1:-1]})
    for text in list(found):
        for safe in _URL_SAFE:
            for encoded in (quote(text, safe=safe), quote_plus(text, safe=safe)):
                found.update({encoded, _PERCENT.sub(lambda hexed: hexed.group().lower(), encoded)})
    return found


def _base64_runs(raw: bytes) -> Iterator[str]:
    """The base64 characters made of ``raw``'s bits alone, wherever ``raw`` sits in what is encoded.

    Base64 packs 3 bytes into 4 characters, so text before ``raw`` (``user:`` in a Basic-auth
    header) shifts it by 0, 1 or 2 bytes; for each shift, the characters that only ``raw``'s bits
    fill are the same whatever comes before or after it.
    """
    for shift in range(3):
        first_bit, end_bit = 8 * shift, 8 * (shift + len(raw))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(bytes(shift) + raw + bytes(2)).decode()
            yield text[-(-first_bit // 6): end_bit // 6]
