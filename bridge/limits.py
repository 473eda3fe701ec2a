"""What one request may hold and one web process holds at once, from the environment.

Its own small module: the ``syncbridge web`` command reads it in granian's main process, which
imports nothing of the app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MiB = 1024 * 1024


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and what one process holds at once; each has an environment variable."""

    max_body: int = 25 * MiB  # SYNCBRIDGE_MAX_BODY_BYTES: a hook body (GitHub caps payloads at 25 MB)
    api_max_body: int = 1 * MiB  # any other route: the API takes no more than a small JSON object
    body_timeout: float = 10.0  # SYNCBRIDGE_BODY_TIMEOUT: seconds for a whole body...
    body_min_rate: int = 500  # ...plus one more per this many bytes received...
    body_timeout_max: float = 60.0  # ...up to this
    header_timeout: float = 10.0  # SYNCBRIDGE_HEADER_TIMEOUT: seconds for the request line and headers
    max_in_flight: int = 1000  # SYNCBRIDGE_MAX_IN_FLIGHT: requests one process serves at once
    body_budget: int = 64 * MiB  # SYNCBRIDGE_BODY_BUDGET_BYTES: request bodies one process holds at once

    @classmethod
    def from_environ(cls) -> Limits:
        defaults = cls()
        return cls(
            max_body=int(_env_number("SYNCBRIDGE_MAX_BODY_BYTES", defaults.max_body)),
            body_timeout=_env_number("SYNCBRIDGE_BODY_TIMEOUT", defaults.body_timeout),
            header_timeout=_env_number("SYNCBRIDGE_HEADER_TIMEOUT", defaults.header_timeout),
            max_in_flight=int(_env_number("SYNCBRIDGE_MAX_IN_FLIGHT", defaults.max_in_flight)),
            body_budget=int(_env_number("SYNCBRIDGE_BODY_BUDGET_BYTES", defaults.body_budget)),
        )
