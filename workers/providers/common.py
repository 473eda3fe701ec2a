"""Small helpers several provider modules share: provider timestamps, Bearer headers, minted tokens.

Kept apart from ``base`` (the HTTP layer and the Remote every provider returns) because only
some providers need them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from workers.providers.base import Permanent

T = TypeVar("T")
# Renew a minted token this long before it expires, so it never lapses in the middle of a call.
RENEW_BEFORE = 300.0


def parse_time(value: Any) -> datetime | None:
    """A provider's timestamp as an aware UTC datetime; None when absent or unreadable.

    Takes ISO 8601 with ``Z``, an offset, or neither (read as UTC), and epoch milliseconds
    (Bitbucket's ``lastSync``). Unreadable means "unknown", never an error: a status document
    is still usable without it.
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """A moment in the job's timestamp format: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Token:
    """An access token and when it stops working (epoch seconds)."""

    value: str
    expires_at: float


class TokenCache:
    """Minted access tokens, one per credential, reused by every job of this worker process.

    Minting costs a round trip to a token service (and its rate limits), so a token is kept
    until ``RENEW_BEFORE`` seconds before it expires. ``tokens`` is public so that a test can
    age a token instead of waiting for it.
    """

    def __init__(self) -> None:
        self.tokens: dict[Hashable, Token] = {}
        self._lock = threading.Lock()

    def _current(self, key: Hashable, mint: Callable[[], Token]) -> str:
        """The token for ``key``, minted by ``mint`` when there is none or it is about to expire."""
        with self._lock:
            token = self.tokens.get(key)
            if token is None or token.expires_at - RENEW_BEFORE <= time.time():
                token = self.tokens[key] = mint()
            return token.value

    def call(self, key: Hashable, mint: Callable[[], Token], send: Callable[[str], T]) -> T:
        """``send`` with the token for ``key``; a refused call drops the token, so the next sync mints anew.

        A token the provider refuses (revoked, scoped wrong) would otherwise fail every sync until
        it expired, up to a day for an IAM token.
        """
        token = self._current(key, mint)
        try:
            return send(token)
        except Permanent:
            with self._lock:
                self.tokens.pop(key, None)
            raise
