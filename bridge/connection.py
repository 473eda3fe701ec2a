"""The Redis connection both processes use, from ``REDIS_TLS_URL`` or ``REDIS_URL``.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
Heroku Redis presents a self-signed certificate, so ``rediss://`` skips verification (the
argument is only valid for TLS URLs).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from redis import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


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


def address(redis: Redis) -> str:
    """Where ``redis`` connects, for a log line: built from its settings, so no password can show."""
    settings = redis.connection_pool.connection_kwargs
    scheme = {"SSLConnection": "rediss", "UnixDomainSocketConnection": "unix"}.get(
        redis.connection_pool.connection_class.__name__, "redis")
    user = settings.get("username") or ""
    auth = f"{user}:***@" if settings.get("password") else (f"{user}@" if user else "")
    where = settings.get("path") or f"{settings.get('host')}:{settings.get('port')}"
    return f"{scheme}://{auth}{where}/{settings.get('db', 0)}"


def problem(exc: RedisError) -> str:
    """What is wrong with Redis, in words for people (``/readyz``, the dashboard, the worker's log).

    redis-py's connection errors read "Error 111 connecting to host:port. Connection refused.":
    the last sentence is the reason, and the address stays out of what the web answers.
    """
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return "Redis refused our credentials: check the password in REDIS_URL"
    if isinstance(exc, BusyLoadingError):
        return "Redis is still loading its data set into memory"
    if isinstance(exc, ReadOnlyError):
        return "Redis is a read-only replica: REDIS_URL must name the primary"
    if isinstance(exc, RedisTimeoutError):
        return "Redis did not answer in time"
    if isinstance(exc, RedisConnectionError):
        reason = str(exc).rstrip(".").rpartition(". ")[2] or "the connection failed"
        return f"cannot connect to Redis: {reason[:1].lower()}{reason[1:]}"
    return f"Redis answered with an error: {type(exc).__name__}"
