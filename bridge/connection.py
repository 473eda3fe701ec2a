"""The Redis connection both processes use: ``REDIS_TLS_URL`` or ``REDIS_URL``, or Redis Sentinel.

Short timeouts on the web side turn a dead Redis into a prompt 503 instead of a hung request.
``rediss://`` verifies the server's certificate and name unless the operator chose otherwise
(:func:`tls_options`).

With ``REDIS_SENTINELS`` and ``REDIS_SENTINEL_SERVICE`` the clients ask the Sentinels where the
primary is (redis-py's Sentinel support), and ask again whenever a connection breaks or the server
they reach says it is a replica: a failover costs the requests in flight a 503, and the next ones
reach the new primary. ``REDIS_URL``, if also set, then only gives the password, user, database
and TLS: the Sentinels give the address.

With ``SYNCBRIDGE_REDIS_REPLICAS=N`` a delivery counts as stored only once N replicas hold it:
the enqueue script and Redis ``WAIT`` travel in one write and their replies come back together,
still one round trip; fewer replicas in time raise :class:`NotReplicated` (a 503, the host retries
and the delivery id dedupes the retry).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hiredis
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.asyncio.connection import ConnectionPool as AsyncConnectionPool
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.commands.core import Script
from redis.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

log = logging.getLogger("syncbridge.redis")
# How long a delivery's round trip waits for SYNCBRIDGE_REDIS_REPLICAS to acknowledge it: within the
# web's 1 s read timeout, and far above a replica's lag on a working network (well under 1 ms on a LAN).
REPLICA_WAIT_MS = 500
# The Sentinels themselves answer a question each (where is the primary?): never wait long on one.
SENTINEL_OPTIONS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


class NoRedis(RuntimeError):
    """Redis is not configured (no REDIS_TLS_URL, REDIS_URL or REDIS_SENTINELS), or wrongly."""


class NotReplicated(RedisError):
    """Fewer replicas than ``SYNCBRIDGE_REDIS_REPLICAS`` acknowledged a write in time: a failover
    now could lose it, so it does not count as accepted (the host's retry is deduped)."""


@dataclass(frozen=True, slots=True)
class SentinelSettings:
    """``REDIS_SENTINELS`` (``host:port,host:port,...``) and ``REDIS_SENTINEL_SERVICE``."""

    addresses: tuple[tuple[str, int], ...]
    service: str


def sentinel_settings() -> SentinelSettings | None:
    """The Sentinels to ask for the primary, or None when ``REDIS_SENTINELS`` is unset."""
    raw = os.environ.get("REDIS_SENTINELS", "").strip()
    if not raw:
        return None
    service = os.environ.get("REDIS_SENTINEL_SERVICE", "").strip()
    if not service:
        raise NoRedis("REDIS_SENTINELS is set but REDIS_SENTINEL_SERVICE is not: set it to the name the "
                      "Sentinels monitor the primary under (`sentinel monitor <name> ...`)")
    return SentinelSettings(tuple(_sentinel_address(item) for item in raw.split(",") if item.strip()), service)


def _sentinel_address(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NoRedis(f"REDIS_SENTINELS: {item.strip()!r} is not host:port (write host:port,host:port,...)")
    return host.strip("[]"), int(port)  # an IPv6 address may be written [::1]:26379


def replicas() -> int:
    """``SYNCBRIDGE_REDIS_REPLICAS``: how many replicas must hold a delivery before it is answered 2xx."""
    raw = os.environ.get("SYNCBRIDGE_REDIS_REPLICAS", "").strip() or "0"
    if not raw.isdigit():
        raise NoRedis(f"SYNCBRIDGE_REDIS_REPLICAS: {raw!r} is not a number of replicas (0 or more)")
    return int(raw)


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
    """A client for ``url`` (default: the environment's, Sentinels first), with :func:`options`."""
    return _client(Redis, Sentinel, url, blocking)


def _client(redis_class: Any, sentinel_class: Any, url: str | None, blocking: bool) -> Any:
    """A sync or asyncio client: of ``url`` if given, else of the primary the Sentinels name if they
    are set, else of the environment's URL."""
    if url is None and (sentinels := sentinel_settings()) is not None:
        sentinel = sentinel_class(sentinels.addresses, sentinel_kwargs=SENTINEL_OPTIONS)
        return sentinel.master_for(sentinels.service, redis_class=redis_class, **_primary_options(blocking))
    url = url or redis_url()
    return redis_class.from_url(url, **options(url, blocking=blocking))


def _primary_options(blocking: bool) -> dict[str, Any]:
    """Options for the primary the Sentinels name: :func:`options`, and ``REDIS_URL``'s password,
    user, database and TLS settings when it is set (its host and port give way to the Sentinels')."""
    url = os.environ.get("REDIS_TLS_URL") or os.environ.get("REDIS_URL")
    if not url:
        return options("redis://", blocking=blocking)
    settings = options(url, blocking=blocking)
    settings.update({name: value for name, value in parse_url(url).items()
                     if name not in ("host", "port", "path", "connection_class")})
    if url.startswith("rediss://"):
        settings["ssl"] = True  # redis-py's Sentinel pool picks its TLS connection class by this flag
    return settings


def run_script(redis: Redis, script: Script, keys: list[Any], args: list[Any], replicas: int) -> Any:
    """Run ``script``; with ``replicas``, also wait until that many replicas hold its writes.

    The script and ``WAIT`` go in one pipeline (one round trip, as :class:`AsyncScript` does on
    the event loop); fewer replicas in time raise :class:`NotReplicated`.
    """
    if not replicas:
        return script(keys=keys, args=args)
    for _ in range(2):  # a second time only after loading a script Redis lost (a restart, SCRIPT FLUSH)
        pipe = redis.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.wait(replicas, REPLICA_WAIT_MS)
        reply, acked = pipe.execute(raise_on_error=False)
        if not isinstance(reply, NoScriptError):
            break
        redis.script_load(script.script)
    for answer in (reply, acked):
        if isinstance(answer, Exception):
            raise answer
    return replicated(reply, acked, replicas)


def replicated(reply: Any, acked: int, replicas: int) -> Any:
    """``reply`` if ``acked`` (WAIT's answer) reaches ``replicas``, else :class:`NotReplicated`."""
    if acked < replicas:
        raise NotReplicated(f"{acked} of the {replicas} replicas SYNCBRIDGE_REDIS_REPLICAS asks for acknowledged "
                            f"the write within {REPLICA_WAIT_MS} ms")
    return reply


class AsyncScript:
    """Runs one Lua script from the event loop, over a connection of its own, one call at a time.

    For the edge's group commit, which calls it for every batch of deliveries: a bare
    ``redis.asyncio`` connection skips the client's pool and command layers, which cost more
    CPU per call than the call itself; the connection still does the work that matters (parsing
    with hiredis, timeouts, TLS, AUTH, dropping a broken socket so the next call opens a new one).
    As the pool does before lending a connection, an idle socket that has become readable (the
    server closed it: a restart) is replaced before use. A script Redis lost (a restart, SCRIPT
    FLUSH) is loaded again.

    With Sentinels, the connection comes from redis-py's Sentinel pool (``make_connection``): it
    asks the Sentinels for the primary each time it connects, and drops itself when the server
    says it has become a replica, so after a failover the next call reaches the new primary; a
    call costs the same as without them. With ``SYNCBRIDGE_REDIS_REPLICAS`` each call writes the
    script and ``WAIT`` together and reads both replies: one round trip per batch still.
    """

    def __init__(self, script: Script, url: str | None = None, *, replicated: bool = True):
        self._script = script
        # Kept: a Sentinel pool's connections refer to it weakly, for the primary's address.
        self._pool: AsyncConnectionPool = _client(AsyncRedis, AsyncSentinel, url, blocking=False).connection_pool
        self._connection: AsyncConnection | None = None
        self._replicas = replicas() if replicated else 0  # what no accepted delivery depends on needs no WAIT
        self._wait = hiredis.pack_command(("WAIT", self._replicas, REPLICA_WAIT_MS)) if self._replicas else b""

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        command = ("EVALSHA", self._script.sha, len(keys), *keys, *args)
        try:
            return await self._call(command, self._wait)
        except NoScriptError:
            await self._call(("SCRIPT", "LOAD", self._script.script))
            return await self._call(command, self._wait)

    async def _call(self, command: tuple[Any, ...], wait: bytes = b"") -> Any:
        if self._connection is None:
            self._connection = self._pool.make_connection()
        elif self._connection.is_connected and await self._connection.can_read():
            await self._connection.disconnect()  # an idle socket with something to read: the server closed it
        if not self._connection.is_connected:
            # connect() is where a Sentinel pool's connection asks for the primary; redis-py's
            # send_packed_command would connect to the configured host (none) without asking.
            await self._connection.connect()
        try:
            # hiredis packs in C: a batch's few hundred arguments cost several times more in redis-py's packer
            await self._connection.send_packed_command(hiredis.pack_command(command) + wait, check_health=False)
            try:
                reply = await self._connection.read_response()
            except ResponseError as exc:  # the script's error; WAIT's reply still follows it
                reply = exc
            acked = await self._connection.read_response() if wait else 0
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._connection.disconnect()  # a half-read reply must not be taken for the next one's
            raise
        if isinstance(reply, ResponseError):
            raise reply
        return replicated(reply, acked, self._replicas) if wait else reply

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.disconnect()
        if isinstance(manager := getattr(self._pool, "sentinel_manager", None), AsyncSentinel):
            for sentinel in manager.sentinels:
                await sentinel.aclose()


def address(redis: Redis) -> str:
    """Where ``redis`` connects, for a log line: built from its settings, so no password can show.

    Credentials show as ``***@``, as the log scrubber masks any URL's userinfo.
    """
    pool = redis.connection_pool
    settings = pool.connection_kwargs
    auth = "***@" if settings.get("password") or settings.get("username") else ""
    if isinstance(pool, SentinelConnectionPool):
        sentinels = ",".join("{host}:{port}".format_map(sentinel.connection_pool.connection_kwargs)
                             for sentinel in pool.sentinel_manager.sentinels)
        return f"the primary of Sentinel service {pool.service_name!r} ({auth}Sentinels {sentinels})"
    scheme = {"SSLConnection": "rediss", "UnixDomainSocketConnection": "unix"}.get(pool.connection_class.__name__,
                                                                                   "redis")
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
    if isinstance(exc, MasterNotFoundError | AsyncMasterNotFoundError):
        return "the Redis Sentinels name no primary (none answers, or a failover is under way)"
    if isinstance(exc, NotReplicated):
        return "fewer Redis replicas than SYNCBRIDGE_REDIS_REPLICAS acknowledged the write in time"
    if isinstance(exc, RedisTimeoutError):
        return "Redis did not answer in time"
    if isinstance(exc, RedisConnectionError):
        reason = str(exc).rstrip(".").rpartition(". ")[2] or "the connection failed"
        return f"cannot connect to Redis: {reason[:1].lower()}{reason[1:]}"
    return f"Redis answered with an error: {type(exc).__name__}"
