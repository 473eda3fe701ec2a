"""Slow clients: ``--slow`` connections trickle bodies at a byte a second while signed pushes are timed.

Each slow client sends its headers with ``Content-Length: 100000`` and then one byte a second,
as a scanner or a stalled mobile link does; one that the server cuts off (syncbridge answers 408
after its body deadline) is replaced at once, so ``--slow`` of them are held the whole time.
Meanwhile signed pushes (bench.payloads' typical size, distinct delivery ids) go one after
another for ``--seconds`` (longer than syncbridge's 10 s body deadline, so slow clients are cut
off and replaced during it), and for syncbridge a ``/healthz`` after every tenth: their latency
is what a Git host and a load balancer see. The same against adnanh/webhook, in the same run.

    .venv/bin/python -m bench.slow_clients              # about 1 minute

Loopback only; bounded by ``--slow`` (max 2,000) and ``--seconds`` (max 60).
"""

from __future__ import annotations

import argparse
import selectors
import socket
import threading
import time
import uuid
from contextlib import suppress
from typing import Any

import requests
from redis import Redis

from bench.common import HOST, Stack, mesa_config, percentile, signed_push, write_result
from bench.receiver import REPO, start_webhook
from bridge.store import delivery_key

HEAD = (b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: push\r\nContent-Length: 100000\r\n\r\n{")


class SlowClients:
    """Holds ``count`` connections to ``port`` that trickle a byte a second; replaces any the server ends."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.cut_off = 0  # connections the server answered or closed (a 408 after its deadline)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            self._open()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def _open(self) -> None:
        conn = socket.create_connection((HOST, self.port), timeout=10)
        conn.sendall(HEAD)
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ)

    def _run(self) -> None:
        next_byte = time.monotonic() + 1
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=max(0.0, next_byte - time.monotonic())):
                conn: socket.socket = key.fileobj  # type: ignore[assignment]
                self.selector.unregister(conn)
                conn.close()
                self.cut_off += 1
                self._open()
            if time.monotonic() >= next_byte:
                next_byte += 1
                for key in list(self.selector.get_map().values()):
                    with suppress(OSError):  # a closed one is reported readable by the next select
                        key.fileobj.send(b" ")  # type: ignore[union-attr]


def timed_pushes(url: str, seconds: float, prefix: str, health: str | None) -> dict[str, Any]:
    """Signed pushes one after another for ``seconds`` (and a /healthz after every tenth, if given)."""
    session = requests.Session()
    push_ms: list[float] = []
    health_ms: list[float] = []
    statuses: dict[int, int] = {}
    index = -1
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        index += 1
        headers, body = signed_push(f"acme/{REPO}", delivery=f"{prefix}-{index}")
        started = time.perf_counter()
        answer = session.post(url, data=body, headers=headers, timeout=30)
        push_ms.append(1000 * (time.perf_counter() - started))
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        if health and index % 10 == 9:
            started = time.perf_counter()
            session.get(health, timeout=30).raise_for_status()
            health_ms.append(1000 * (time.perf_counter() - started))
    result: dict[str, Any] = {"pushes": index + 1, "statuses": statuses,
                              "push_ms": {"p50": percentile(push_ms, 50), "p99": percentile(push_ms, 99),
                                          "max": max(push_ms)}}
    if health_ms:
        result["healthz_ms"] = {"p50": percentile(health_ms, 50), "p99": percentile(health_ms, 99),
                                "max": max(health_ms)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=500, help="slow connections held (max 2000)")
    parser.add_argument("--seconds", type=float, default=15, help="seconds of timed pushes per server (max 60)")
    args = parser.parse_args()
    if not 0 < args.slow <= 2000 or not 0 < args.seconds <= 60:
        parser.error("--slow must be in (0, 2000] and --seconds in (0, 60]")
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, Any] = {}
    with Stack("slow-clients") as stack:
        stack.write_config(mesa_config(f"http://{HOST}:9", [REPO]))
        base, _ = stack.web()
        webhook_url, _ = start_webhook(stack)
        targets = {"syncbridge": (f"{base}/hooks/github", f"{base}/healthz"), "webhook": (webhook_url, None)}
        for name, (url, health) in targets.items():
            baseline = timed_pushes(url, 2, f"{run_id}-{name}-alone", health)
            port = int(url.split(":")[2].split("/")[0])
            with SlowClients(port, args.slow) as slow:
                time.sleep(2)  # every slow client is connected and has started its body
                loaded = timed_pushes(url, args.seconds, f"{run_id}-{name}-slow", health)
                loaded["slow_clients_cut_off"] = slow.cut_off
            results[name] = {"without_slow_clients": baseline, "with_slow_clients": loaded}
            print(f"{name:<10} alone: push p50 {baseline['push_ms']['p50']:.2f} p99 {baseline['push_ms']['p99']:.2f} ms"
                  f" | {args.slow} slow clients: push p50 {loaded['push_ms']['p50']:.2f} p99 "
                  f"{loaded['push_ms']['p99']:.2f} max {loaded['push_ms']['max']:.2f} ms, statuses "
                  f"{loaded['statuses']}"
                  + (f", /healthz p99 {loaded['healthz_ms']['p99']:.2f} ms" if "healthz_ms" in loaded else "")
                  + f", slow clients cut off and replaced: {loaded['slow_clients_cut_off']}")
        redis = Redis.from_url(stack.redis_url)
        stored = sum(1 for _ in redis.scan_iter(match=delivery_key("github", f"{run_id}-syncbridge-*"), count=1000))
    accepted = sum(results["syncbridge"][phase]["statuses"].get(202, 0)
                   for phase in ("without_slow_clients", "with_slow_clients"))
    sb = results["syncbridge"]["with_slow_clients"]
    result = {"params": vars(args), **results, "syncbridge_stored": stored, "syncbridge_accepted": accepted,
              "targets": {"every push 202 and stored": stored == accepted == sum(
                  results["syncbridge"][phase]["pushes"] for phase in ("without_slow_clients", "with_slow_clients")),
                          "push p99 < 50 ms with slow clients": sb["push_ms"]["p99"] < 50,
                          "/healthz p99 < 50 ms with slow clients": sb["healthz_ms"]["p99"] < 50}}
    for name, met in result["targets"].items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")
    write_result("slow_clients", result)


if __name__ == "__main__":
    main()
