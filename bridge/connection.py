"""The Redis connection both processes use, from ``REDIS_TLS_URL`` or ``REDIS_URL``.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
``rediss://`` verifies the server's certificate and name unless the operator chose otherwise
(:func:`tls_options`).
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

log = logging.getLogger("syncbridge.redis")

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
        options.update(tls_options(url))
    return Redis.from_url(url, **options)


def tls_options(url: str) -> dict[str, object]:
    """Certificate checks for a ``rediss://`` URL: verified, unless the operator chose otherwise.

    Two explicit choices skip verification: ``?ssl_cert_reqs=none`` in the URL, and Heroku's
    ``REDIS_TLS_URL`` (Heroku Redis presents a self-signed certificate, and setting that variable
    is Heroku's way of saying so). Either is said once in the log. A URL's own ``ssl_cert_reqs``
    or ``ssl_ca_certs`` (a private CA) is redis-py's to apply and wins over these options.
    """
    asked = parse_qs(urlsplit(url).query).get("ssl_cert_reqs", [""])[-1]
    if asked == "none":
        warn_unverified("the Redis URL says ssl_cert_reqs=none")
        return {}
    if not asked and url == os.environ.get("REDIS_TLS_URL"):
        warn_unverified("it comes from REDIS_TLS_URL (Heroku Redis presents a self-signed certificate)")
        return {"ssl_cert_reqs": None}
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True}


@cache
def warn_unverified(why: str) -> None:
    """Once per process and reason: the log should say it, not repeat it for every client."""
    log.warning("Redis over TLS without verifying its certificate: %s", why)


class ScriptRunner:
    """Runs one Lua script over a connection of its own, one call at a time.

    For the receiver's group commit, which runs the enqueue script thousands of times a second
    from whichever thread leads: the client's pool, retry and instrumentation layers cost more
    CPU per call than packing the arguments. redis-py's connection still does the work that
    matters: packing, parsing, health checks, timeouts, and dropping a broken socket (the next
    call opens a new one). As the pool does before lending a connection, an idle socket that has
    become readable (the server closed it: a restart) is replaced before use. A script Redis lost
    (a restart, SCRIPT FLUSH) is loaded again.
    """

    def __init__(self, redis: Redis, source: str):
        self._script = redis.register_script(source)
        self._connection = redis.connection_pool.make_connection()
        self._lock = threading.Lock()

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        with self._lock:
            try:
                return self._call("EVALSHA", self._script.sha, len(keys), *keys, *args)
            except NoScriptError:
                self._call("SCRIPT", "LOAD", self._script.script)
                return self._call("EVALSHA", self._script.sha, len(keys), *keys, *args)

    def _call(self, *command: Any) -> Any:
        try:
            if self._connection._sock is not None and self._connection.can_read():
                self._connection.disconnect()
        except (RedisConnectionError, OSError):
            self._connection.disconnect()
        self._connection.send_command(*command)
        return self._connection.read_response()
