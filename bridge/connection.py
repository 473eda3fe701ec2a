"""The Redis connection both processes use, from ``REDIS_TLS_URL`` or ``REDIS_URL``.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
Heroku Redis presents a self-signed certificate, so ``rediss://`` skips verification (the
argument is only valid for TLS URLs).
"""

from __future__ import annotations

import os
from typing import Any

import hiredis
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError


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
        settings["ssl_cert_reqs"] = None
    return settings


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
