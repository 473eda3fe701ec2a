"""The public edge: every request to ``syncbridge web`` arrives here, on an event loop.

``/hooks/<source>`` faces the internet, so what a client can hold is a socket and a coroutine,
never a thread (granian, in Rust, parses the request and enforces the header deadline):

- the body is read here under a deadline (``body_timeout``, 10 s, plus a second for every
  ``body_min_rate`` bytes that arrive, as Apache's mod_reqtimeout does, capped at
  ``body_timeout_max``): a client that trickles gets 408 and a closed connection;
- a body over its limit gets 413 before it is read (or as soon as a chunked one passes it);
- bodies held at once share a byte budget, and requests in flight a cap: beyond either, a
  prompt 503 with ``Retry-After`` rather than memory or latency for everyone.

A hook delivery is then verified, parsed and routed (:class:`bridge.hooks.Hooks`) on the loop
and stored through the group commit: every delivery that arrives while a Redis round trip is
in flight shares the next one. Every other path (the API, the dashboard, health) goes, with its
body already read, to the Flask app on a few threads (:mod:`bridge.wsgi_threads`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from flask import Flask
from granian.rsgi import ProtocolClosed
from redis.exceptions import RedisError

from bridge import metrics, wsgi_threads
from bridge.app import Bridge
from bridge.connection import AsyncScript
from bridge.deliveries import KEPT
from bridge.group_commit import GroupCommit
from bridge.hooks import PREFIX, REDIS_DOWN_ANSWER, Answer
from bridge.limits import Limits
from bridge.queueing import Delivery, Enqueuer, Receipt

log = logging.getLogger("syncbridge.hooks")
CLOSE = (("Connection", "close"),)
LOG_TICKS = 10  # delivery-log writes a second; the counts for /metrics go once a second
LOG_EVERY = 1.0 / LOG_TICKS
# Bodies up to this size are read in one call under the base deadline: 10 s for 64 KiB asks 6.5 KB/s
# of a client, which no Git host falls below; larger ones earn more time as their bytes arrive.
WHOLE_READ = 64 * 1024


BUSY = Answer(503, {"error": "the bridge is busy; nothing was stored, retry later"}, (("Retry-After", "1"), *CLOSE))
SLOW = Answer(408, {"error": "the request body did not arrive in time"}, CLOSE)


class _Body:
    """One request body on its way in: its deadline, and the bytes of the process's budget it holds.

    The deadline is one timer per request, re-armed only when it fires early (the deadline
    moved on as bytes arrived), so a chunk costs an addition, not a timer.
    """

    __slots__ = ("deadline", "expired", "held", "last", "limits", "loop", "task", "timer")

    def __init__(self, limits: Limits):
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        start = self.loop.time()
        self.deadline = start + limits.body_timeout
        self.last = start + limits.body_timeout_max
        self.expired = False
        self.held = 0
        self.timer = self.loop.call_at(self.deadline, self._fire)

    def received(self, size: int) -> None:
        self.deadline = min(self.deadline + size / self.limits.body_min_rate, self.last)

    def _fire(self) -> None:
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._fire)
        else:
            self.expired = True
            if self.task is not None:  # always: bodies are read inside a request's task
                self.task.cancel()

    def done(self) -> None:
        self.timer.cancel()


class Receiver:
    """The RSGI app ``syncbridge web`` serves (granian calls ``__rsgi_init__`` in each process)."""

    def __init__(self, app: Flask, limits: Limits, threads: int):
        self.app = app
        bridge: Bridge = app.extensions["syncbridge"]
        self.bridge = bridge
        self.limits = limits
        self.threads = ThreadPoolExecutor(threads, thread_name_prefix="syncbridge-web")
        self.in_flight = 0
        self.body_bytes = 0
        self.rejected: Counter[tuple[str, str]] = Counter()  # (source, outcome) -> deliveries not queued
        self.script = AsyncScript(bridge.enqueuer.script)
        # The delivery log on a connection of its own, written from the loop: no thread, no GIL hand-off.
        self.log_script = AsyncScript(bridge.deliveries.script, replicated=False)
        self.commits: GroupCommit[Delivery, Receipt] = GroupCommit(self._store)
        self._background: set[asyncio.Task[None]] = set()

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._flush())
        self._background.add(task)
        # Everything built so far (the imported libraries, the app, the config) lives as long as the
        # process: out of the garbage collector's sight, a full collection scans only what requests
        # leave behind (Instagram's gc.freeze; here it halved the time spent collecting under load
        # and the pauses that showed in the pushes' p99).
        gc.freeze()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        for task in self._background:
            task.cancel()
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        if self.in_flight >= self.limits.max_in_flight:
            return _respond(proto, BUSY)
        self.in_flight += 1
        body: _Body | None = None
        try:
            path = scope.path
            source = path[len(PREFIX):] if path.startswith(PREFIX) else ""
            if not source or "/" in source:
                body = _Body(self.limits)
                await self._forward(scope, proto, body)
            elif scope.method != "POST":
                _respond(proto, Answer(405, {"error": "webhooks are POSTed"}, (("Allow", "POST"),)))
            else:
                body = _Body(self.limits)
                _respond(proto, await self._hook(scope, proto, source, body))
        finally:
            self.in_flight -= 1
            if body is not None:
                body.done()
                self.body_bytes -= body.held

    async def _hook(self, scope: Any, proto: Any, source: str, body: _Body) -> Answer:
        """The answer to one delivery, noted in the delivery log (a tuple appended; written by :meth:`_flush`)."""
        seen = self.bridge.deliveries.add
        raw = await self._read(scope, proto, self.limits.max_body, body)
        if isinstance(raw, Answer):
            return seen(source, scope.headers, raw)
        result = self.bridge.hooks.check(source, scope.headers, raw)
        if isinstance(result, Answer):
            if result.outcome is not None:
                self.rejected[source, result.outcome] += 1
            return seen(source, scope.headers, result)
        try:
            receipt = await self.commits.submit(result.delivery)
        except (RedisError, OSError) as exc:  # never a 2xx for work that was not stored
            log.error("redis unavailable: %s", type(exc).__name__)
            return seen(source, scope.headers, REDIS_DOWN_ANSWER, result)
        except Exception:
            log.exception("delivery to %s failed", source)
            return seen(source, scope.headers, Answer(500, {"error": "internal error; nothing was stored"}), result)
        return seen(source, scope.headers, self.bridge.hooks.answer(result, receipt, _job_url_root(scope)), result,
                    receipt)

    async def _forward(self, scope: Any, proto: Any, body: _Body) -> None:
        """Any other route: read the body here, then let Flask answer on a thread."""
        raw = await self._read(scope, proto, self.limits.api_max_body, body)
        if isinstance(raw, Answer):
            return _respond(proto, raw)
        environ = wsgi_threads.environ(scope, raw)
        try:
            status, headers, content = await asyncio.get_running_loop().run_in_executor(
                self.threads, wsgi_threads.run, self.app, environ)
        except Exception:  # Flask answers its own errors; this is the glue failing
            log.exception("%s %s failed", scope.method, scope.path)
            return _respond(proto, Answer(500, {"error": "internal error"}))
        proto.response_bytes(status, headers, content)

    async def _read(self, scope: Any, proto: Any, limit: int, body: _Body) -> bytes | Answer:
        """The whole body, or the answer that ends the request (408, 413, 503) without it.

        A body of known length that the base deadline covers at any sane rate (``WHOLE_READ``
        bytes: every push of a few commits) is read in one call; larger and chunked ones
        chunk by chunk, each chunk extending the deadline and counted against the limits.
        """
        declared = scope.headers.get("content-length")
        try:
            if declared is not None:
                length = int(declared)  # granian has checked it is a number
                if length > limit:
                    return _too_large(limit)
                if not self._hold(body, length):
                    return BUSY
                if length == 0:
                    return b""
                if length <= WHOLE_READ:
                    return await proto()
            return await self._read_chunks(proto, limit, body)
        except asyncio.CancelledError:
            if not body.expired:
                raise
            log.info("%s %s: the body did not arrive in time", scope.method, scope.path)
            return SLOW
        except ProtocolClosed:
            return Answer(400, {"error": "the client closed the connection before the body arrived"}, CLOSE)

    async def _read_chunks(self, proto: Any, limit: int, body: _Body) -> bytes | Answer:
        chunks: list[bytes] = []
        received = 0
        async for chunk in proto:
            received += len(chunk)
            if received > limit:  # a chunked body has no Content-Length to refuse it by
                return _too_large(limit)
            if received > body.held and not self._hold(body, received - body.held):
                return BUSY
            chunks.append(chunk)
            body.received(len(chunk))
        return b"".join(chunks)

    def _hold(self, body: _Body, size: int) -> bool:
        """Take ``size`` more bytes of the process's body budget for ``body``, if there are that many."""
        if self.body_bytes + size > self.limits.body_budget:
            return False
        self.body_bytes += size
        body.held += size
        return True

    async def _store(self, deliveries: list[Delivery]) -> list[Receipt]:
        keys, args = self.bridge.enqueuer.pack(deliveries)
        return Enqueuer.receipts(deliveries, await self.script(keys, args))

    async def _flush(self) -> None:
        """Off the request path: every ``LOG_EVERY`` the delivery log (``bridge.deliveries``), encoded
        on the loop and written by one script call on its own connection; once a second the counts of
        deliveries answered without the queue, and of log entries a burst left out, for /metrics.

        Small and often: a tenth of a second's entries (at most ``KEPT // 10`` per stream: in a burst
        the stream keeps the newest anyway) cost the loop well under a millisecond, where a whole
        second's thousand entries at once showed in the pushes' p99.
        """
        loop = asyncio.get_running_loop()
        dropped = 0
        for tick in itertools.count(1):
            await asyncio.sleep(LOG_EVERY)
            seen, missed = self.bridge.deliveries.take(newest=KEPT // LOG_TICKS)
            dropped += missed
            for keys, args in self.bridge.deliveries.calls(seen):
                try:
                    await self.log_script(keys, args)
                except (RedisError, OSError) as exc:  # lost for this tick; the answers were not
                    log.debug("delivery log not written: %s", exc)
                    dropped += len(seen)
            if tick % LOG_TICKS == 0 and (self.rejected or dropped):
                counts, self.rejected = self.rejected, Counter()
                await loop.run_in_executor(self.threads, self._count, counts, dropped)
                dropped = 0

    def _count(self, rejected: Counter[tuple[str, str]], dropped: int) -> None:
        pipe = self.bridge.redis.pipeline(transaction=False)
        metrics.add(pipe, "webhooks_received", {metrics.field(source=source, outcome=outcome): n
                                                for (source, outcome), n in rejected.items()})
        if dropped:
            metrics.add(pipe, "deliveries_unlogged", {metrics.field(): dropped})
        try:
            pipe.execute()
        except RedisError as exc:  # the counts are lost for this second; the answers were not
            log.debug("counts not written: %s", exc)


def _respond(proto: Any, answer: Answer) -> None:
    proto.response_bytes(answer.status, [("Content-Type", "application/json"), *answer.headers],
                         orjson.dumps(answer.body))


def _too_large(limit: int) -> Answer:
    return Answer(413, {"error": f"the body is over {limit} bytes"}, CLOSE)


def _job_url_root(scope: Any) -> str:
    """Where ``/jobs/<id>`` lives as the client sees it: the last proxy's X-Forwarded-Proto and -Host
    (what ProxyFix trusts in the Flask app), else the request's own Host."""
    headers = scope.headers
    scheme = (headers.get("x-forwarded-proto") or scope.scheme).rsplit(",", 1)[-1].strip()
    host = (headers.get("x-forwarded-host") or headers.get("host") or scope.server).rsplit(",", 1)[-1].strip()
    return f"{scheme}://{host}/jobs/"
