"""What ``SYNCBRIDGE_REDIS_REPLICAS=1`` costs a push: receipt latency with and without Redis ``WAIT 1``.

An embedded Redis (AOF on) and a replica of it, both on loopback; ``syncbridge web`` started once
with ``SYNCBRIDGE_REDIS_REPLICAS=0`` and once with ``1``, against the same two servers (the
replica runs in both cases: only the WAIT differs), alternately, ``--rounds`` times each. Each run
posts ``--pushes`` signed pushes from ``--clients`` threads, one at a time per thread, each push its
own delivery and repository (its own target: nothing coalesces), and times each answer (client
side). No worker runs: the queue only grows. Reported per setting, over its rounds: p50, p90, p99
and max of the answer time, pushes per second, and the statuses.

With WAIT, the enqueue script and ``WAIT 1 500`` travel in one write and come back together: the
extra is the replica's acknowledgement (its REPLCONF ACK), which on loopback is the time the
replica takes to read and apply the write. On a network, add one round trip to the replica.

    .venv/bin/python -m bench.replicas              # 2 rounds x 2 settings x 1000 pushes, 4 clients: about 1 min

Loopback only; bounded by ``--pushes`` (max 5000) and ``--clients`` (max 32).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
from redis import Redis

from bench.common import ORG, Stack, mesa_config, percentile, signed_push, write_result
from bridge.embedded import EmbeddedRedis


def replicated(primary: Redis, timeout: float = 30.0) -> None:
    """Wait until the replica has finished its first sync: until then WAIT counts it out."""
    deadline = time.monotonic() + timeout
    while not (primary.set("bench:probe", "1") and primary.wait(1, 200) == 1):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not catch up with the primary")


def measure(hook: str, repos: list[str], clients: int) -> dict[str, Any]:
    """Post one push per repository from ``clients`` threads: the answer times (ms), statuses and duration (s)."""
    times: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(share: list[str]) -> None:
        with requests.Session() as session:
            for repo in share:
                headers, body = signed_push(f"{ORG}/{repo}", delivery=uuid.uuid4().hex)
                began = time.perf_counter()
                answer = session.post(hook, data=body, headers=headers, timeout=10)
                took = (time.perf_counter() - began) * 1000
                with lock:
                    times.append(took)
                    statuses.append(answer.status_code)

    threads = [threading.Thread(target=client, args=(repos[index::clients],)) for index in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"times": times, "statuses": statuses, "seconds": time.perf_counter() - began}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [took for run in runs for took in run["times"]]
    statuses = [status for run in runs for status in run["statuses"]]
    return {"pushes": len(times), "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))},
            "rps": len(times) / sum(run["seconds"] for run in runs),
            "answer_ms": {"p50": percentile(times, 50), "p90": percentile(times, 90), "p99": percentile(times, 99),
                          "max": max(times, default=float("nan"))}}


def up_to(most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``most``."""
    def parse(text: str) -> int:
        if not text.isdigit() or not 0 < int(text) <= most:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {most}")
        return int(text)
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=up_to(5000), default=1000, help="pushes per setting")
    parser.add_argument("--clients", type=up_to(32), default=4, help="concurrent clients")
    parser.add_argument("--rounds", type=up_to(5), default=2, help="runs of each setting, alternating")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    warmup = [f"warm{index:03d}" for index in range(50)]
    runs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    with Stack("replicas", keep=args.keep) as stack:
        replica = EmbeddedRedis(stack.dir / "replica", replica_of=stack.redis_server).start()
        try:
            replicated(Redis.from_url(stack.redis_url))
            repos = [f"r{index:04d}" for index in range(args.pushes)]
            stack.write_config(mesa_config("http://127.0.0.1:9", warmup + repos))  # no worker: never called
            for _ in range(args.rounds):
                for replicas in runs:
                    base, web = stack.web(env={"SYNCBRIDGE_REDIS_REPLICAS": str(replicas)})
                    measure(f"{base}/hooks/github", warmup, args.clients)  # connections, caches, the script loaded
                    runs[replicas].append(measure(f"{base}/hooks/github", repos, args.clients))
                    stack.stop(web)
                    Redis.from_url(stack.redis_url).flushall()
        finally:
            replica.stop()

    settings = {f"replicas_{replicas}": summary(done) for replicas, done in runs.items()}
    without, with_wait = settings["replicas_0"]["answer_ms"], settings["replicas_1"]["answer_ms"]
    result = {"params": vars(args), **settings,
              "wait_cost_ms": {pct: with_wait[pct] - without[pct] for pct in ("p50", "p90", "p99")}}
    for name, run in settings.items():
        ms = run["answer_ms"]
        print(f"SYNCBRIDGE_REDIS_REPLICAS={name[-1]}: {run['pushes']} pushes {run['statuses']}, {run['rps']:.0f}/s, "
              f"answer p50 {ms['p50']:.2f} ms, p90 {ms['p90']:.2f} ms, p99 {ms['p99']:.2f} ms, max {ms['max']:.1f} ms")
    cost = result["wait_cost_ms"]
    print(f"WAIT 1 costs p50 {cost['p50']:+.2f} ms, p90 {cost['p90']:+.2f} ms, p99 {cost['p99']:+.2f} ms")
    write_result("replicas", result)


if __name__ == "__main__":
    main()
