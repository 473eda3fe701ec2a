"""The Redis connection both processes use, from ``REDIS_TLS_URL`` or ``REDIS_URL``.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
``rediss://`` verifies the server's certificate and name unless the operator chose otherwise
(:func:`tls_options`).
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hiredis
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.commands.core import Script
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

log = logging.getLogger("syncbridge.redis")


class NoRedis(RuntimeError):
    """Neither REDIS_TLS_URL nor REDIS_URL is set."""


def redis_url() -> str:
    url = os.environ.get("REDIS_TLS_URL") or os.environ.get("REDIS_URL")
    if not url:
        raise NoRedis("set REDIS_URL (or REDIS_TLS_URL), or use `syncbridge run`, which starts its own Redis")
    return url


def options(url: str, *, blocking: bool = False) -> dict[str, Any]:
    """Client options for ``url``; ``blocking`` clients (RQ workers) have no read timeout.

    RQ's worker blocks on BLPOP for up to its TTL; a read timeout shorter than that would end
    the worker, so only the connect timeout is short there.
    """
    settings: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": None if blocking else 1.0,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    if url.startswith("rediss://"):
        settings.update(tls_options(url))
    return settings


def tls_options(url: str) -> dict[str, Any]:
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


def connect(url: str | None = None, *, blocking: bool = False) -> Redis:
    """A client for ``url`` (default: the environment's), with :func:`options`."""
    url = url or redis_url()
    return Redis.from_url(url, **options(url, blocking=blocking))


class AsyncScript:
    """Runs one Lua script from the event loop, over a connection of its own, one call at a time.

    For the edge's group commit, which calls it for every batch of deliveries: a bare
    ``redis.asyncio`` connection skips the client's pool and command layers, which cost more
    CPU per call than the call itself; the connection still does the work that matters (parsing
    with hiredis, timeouts, TLS, AUTH, dropping a broken socket so the next call opens a new one).
    As the pool does before lending a connection, an idle socket that has become readable (the
    server closed it: a restart) is replaced before use. A script Redis lost (a restart, SCRIPT
    FLUSH) is loaded again.
    """

    def __init__(self, script: Script, url: str | None = None):
        self._script = script
        self._url = url or redis_url()
        self._connection: AsyncConnection | None = None

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self._call("EVALSHA", self._script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._call("SCRIPT", "LOAD", self._script.script)
            return await self._call("EVALSHA", self._script.sha, len(keys), *keys, *args)

    async def _call(self, *command: Any) -> Any:
        if self._connection is None:
            self._connection = AsyncRedis.from_url(self._url, **options(self._url)).connection_pool.make_connection()
        elif self._connection.is_connected and await self._connection.can_read():
            await self._connection.disconnect()  # an idle socket with something to read: the server closed it
        try:
            # hiredis packs in C: a batch's few hundred arguments cost several times more in redis-py's packer
            await self._connection.send_packed_command(hiredis.pack_command(command), check_health=False)
            return await self._connection.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._connection.disconnect()  # a half-read reply must not be taken for the next one's
            raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.disconnect()


def address(redis: Redis) -> str:
    """Where ``redis`` connects, for a log line: built from its settings, so no password can show.

    Credentials show as ``***@``, as the log scrubber masks any URL's userinfo.
    """
    settings = redis.connection_pool.connection_kwargs
    scheme = {"SSLConnection": "rediss", "UnixDomainSocketConnection": "unix"}.get(
        redis.connection_pool.connection_class.__name__, "redis")
    auth = "***@" if settings.get("password") or settings.get("username") else ""
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
