"""The Redis connection both processes use, from ``REDIS_TLS_URL`` or ``REDIS_URL``.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
Heroku Redis presents a self-signed certificate, so ``rediss://`` skips verification (the
argument is only valid for TLS URLs).
"""

from __future__ import annotations

import os

from redis import Redis


class NoRedis(RuntimeError):
    """Neither REDIS_TLS_URL nor REDIS_URL is set."""


def redis_url() -> str:
    url = os.environ.get("REDIS_TLS_URL") or os.environ.get("REDIS_URL")
    if not url:
        raise NoRedis("set REDIS_URL (or REDIS_TLS_URL), or use `syncbridge run`, which starts its own Redis")
    return url


def connect(url: str | None = None, *, blocking: bool = False) -> Redis:
    """A client for ``url``; ``blocking`` clients (RQ workers) have no read timeout.

    RQ's worker blocks on BLPOP for up to its TTL; a read timeout shorter than that would end
    the worker, so only the connect timeout is short there.
    """
    url = url or redis_url()
    options: dict[str, object] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": None if blocking else 1.0,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = None
    return Redis.from_url(url, **options)
