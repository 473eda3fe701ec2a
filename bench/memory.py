"""Memory: RSS of the web and worker processes, and Redis bytes per retained job.

``syncbridge web`` (production options) and ``syncbridge worker`` on an embedded Redis (AOF on),
``--jobs`` repositories each routed to its own Mesa target on the provider sandbox (default
settings: a sync completes on its second poll).

1. web idle: RSS of granian's main process and each worker; Redis ``used_memory``.
2. ``--jobs`` pushes (one per repository, no worker yet): Redis bytes per queued job.
3. the worker starts and finishes them all: Redis bytes per retained completed job (the job
   record, RQ's job hash and result, the delivery id, the index entry... all kept for
   ``retention``), with a per-key-kind breakdown from ``MEMORY USAGE``; worker RSS.
4. ``--load-seconds`` of wrk on the receiver: web RSS after load.

    .venv/bin/python -m bench.memory           # about 40 s

Loopback only; bounded by ``--jobs`` (max 5,000) and ``--load-seconds`` (max 30).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

from redis import Redis

from bench.common import (
    ORG,
    ROOT,
    Stack,
    mesa_config,
    rss_bytes,
    signed_push,
    wait_terminal,
    wait_workers,
    write_result,
)
from bench.inflight import enqueue_all
from bench.receiver import wrk

MIB = 1024 * 1024
_ID = re.compile(r"[0-9a-f]{32}")
_REPO = re.compile(r"\br\d{4}\b")


def used_memory(redis: Redis) -> int:
    return int(redis.info("memory")["used_memory"])


def key_kinds(redis: Redis) -> dict[str, dict[str, int]]:
    """Every key grouped by its shape (ids and repository names replaced), with count and MEMORY USAGE."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    keys = list(redis.scan_iter(count=1000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(keys, pipe.execute(), strict=True):
        shape = _REPO.sub("<repo>", _ID.sub("<id>", key.decode(errors="replace")))
        kinds[shape]["keys"] += 1
        kinds[shape]["bytes"] += int(size or 0)
    return dict(sorted(kinds.items(), key=lambda item: -item[1]["bytes"]))


def result_stream_sample(redis: Redis, job_id: str) -> dict[str, Any]:
    """RQ's result stream of one job: how many entries, their types and field sizes."""
    key = f"rq:results:{job_id}"
    entries = redis.xrange(key)
    return {"entries": len(entries), "types": [fields.get(b"type", b"?").decode() for _, fields in entries],
            "bytes_per_entry": [sum(len(name) + len(value) for name, value in fields.items()) for _, fields in entries],
            "ttl_s": redis.ttl(key)}


def summed(rss: dict[str, int]) -> int:
    return sum(rss.values())


# Where a web worker process's memory goes: what each layer of imports adds, in the order the
# process needs them, each measured in a fresh interpreter that imports every layer up to it.
WEB_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("CPython itself", ()),
    ("granian + uvloop (the server and its loop)", ("granian", "granian.server", "granian.rsgi", "uvloop")),
    ("redis-py + hiredis + orjson", ("redis", "redis.asyncio", "hiredis", "orjson")),
    ("Flask + werkzeug + jinja2", ("flask", "werkzeug.middleware.proxy_fix")),
    ("RQ (its job hash, queue keys)", ("rq",)),
    ("pydantic + PyYAML (the config)", ("pydantic", "yaml", "bridge.config")),
    ("cryptography (HMAC)", ("cryptography.hazmat.primitives.hmac",)),
    ("prometheus-client (/metrics)", ("prometheus_client",)),
    ("the rest of syncbridge's web side", ("bridge.app", "bridge.receiver", "bridge.views.dashboard",
                                           "bridge.views.jobs", "bridge.views.metrics", "bridge.views.hooks")),
]


def import_layers() -> list[dict[str, Any]]:
    """RSS after each cumulative layer of WEB_LAYERS, and what the layer added."""
    rows, previous = [], 0
    for index, (label, _) in enumerate(WEB_LAYERS):
        modules = [name for _, names in WEB_LAYERS[: index + 1] for name in names]
        code = (f"import importlib\nfor name in {modules!r}: importlib.import_module(name)\n"
                "print(int(open('/proc/self/statm').read().split()[1]) * 4096)")
        rss = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 cwd=ROOT, timeout=60).stdout)
        rows.append({"layer": label, "rss_bytes": rss, "added_bytes": rss - previous})
        previous = rss
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to create and retain (max 5000)")
    parser.add_argument("--load-seconds", type=float, default=5, help="wrk load on the receiver at the end (max 30)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if not 0 < args.jobs <= 5000 or not 0 <= args.load_seconds <= 30:
        parser.error("--jobs must be in (0, 5000] and --load-seconds in [0, 30]")
    repos = [f"r{index:04d}" for index in range(args.jobs)]
    layers = import_layers()
    with Stack("memory", keep=args.keep) as stack:
        sandbox_url, _ = stack.sandbox()
        stack.write_config(mesa_config(sandbox_url, repos))
        base, web = stack.web()
        redis = Redis.from_url(stack.redis_url)
        time.sleep(1.0)
        web_idle = rss_bytes(web.pid)
        before = used_memory(redis)

        job_ids, statuses, _ = enqueue_all(f"{base}/hooks/github", repos)
        queued = used_memory(redis)
        queued_kinds = key_kinds(redis)
        web_after_pushes = rss_bytes(web.pid)

        worker = stack.worker()
        wait_workers(redis, 1)
        time.sleep(0.5)
        worker_start = rss_bytes(worker.pid)
        _, outcome = wait_terminal(redis, job_ids, timeout=180)
        worker_after = rss_bytes(worker.pid)
        completed = used_memory(redis)
        completed_kinds = key_kinds(redis)
        results_sample = result_stream_sample(redis, job_ids[0])

        load: dict[str, Any] | None = None
        if args.load_seconds:
            headers, body = signed_push(f"{ORG}/{repos[0]}")
            body_path = stack.dir / "body.json"
            body_path.write_bytes(body)
            run = wrk(f"{base}/hooks/github", body_path, headers["X-Hub-Signature-256"],
                      f"mem-{uuid.uuid4().hex[:6]}", args.load_seconds, 32, 2, stack.dir)
            load = {"requests": run["requests"], "rps": run["rps"]}
        web_after_load = rss_bytes(web.pid)
        uss = {"web_after_load": rss_bytes(web.pid, unique=True),
               "worker_after_jobs": rss_bytes(worker.pid, unique=True)}
        aof = redis.info("persistence")

    result = {
        "params": vars(args), "enqueue_statuses": statuses, "job_statuses": outcome,
        "rss_bytes": {"web_idle": web_idle, "web_after_pushes": web_after_pushes, "web_after_load": web_after_load,
                      "worker_started": worker_start, "worker_after_jobs": worker_after},
        "rss_mib_total": {"web_idle": summed(web_idle) / MIB, "web_after_load": summed(web_after_load) / MIB,
                          "worker_started": summed(worker_start) / MIB,
                          "worker_after_jobs": summed(worker_after) / MIB},
        "uss_bytes": uss, "web_import_layers": layers,
        "uss_mib_total": {name: summed(values) / MIB for name, values in uss.items()},
        "load": load,
        "redis": {"used_memory_before": before, "used_memory_queued": queued, "used_memory_completed": completed,
                  "bytes_per_queued_job": (queued - before) / args.jobs,
                  "bytes_per_retained_completed_job": (completed - before) / args.jobs,
                  "aof_enabled": bool(aof["aof_enabled"]),
                  "key_kinds_queued": queued_kinds, "key_kinds_completed": completed_kinds,
                  "rq_results_sample": results_sample},
    }
    # What outlives RQ's result_ttl (1 h): only syncbridge's own keys stay for the whole retention.
    own = sum(row["bytes"] for shape, row in completed_kinds.items() if shape.startswith("syncbridge:"))
    result["redis"]["bytes_per_job_after_rq_ttls"] = own / args.jobs
    mib = result["rss_mib_total"]
    print(f"RSS web (master + workers): idle {mib['web_idle']:.1f} MiB, after load {mib['web_after_load']:.1f} MiB; "
          f"worker (pool + worker processes, the scheduler a thread of one): started {mib['worker_started']:.1f} MiB, "
          f"after {args.jobs} jobs {mib['worker_after_jobs']:.1f} MiB")
    print(f"USS (not counting pages shared with the parent): web {result['uss_mib_total']['web_after_load']:.1f} MiB, "
          f"worker {result['uss_mib_total']['worker_after_jobs']:.1f} MiB")
    for name, value in web_after_load.items():
        print(f"  web  {name:<24} {value / MIB:6.1f} MiB")
    for name, value in worker_after.items():
        print(f"  work {name:<24} {value / MIB:6.1f} MiB")
    print("a web worker process's RSS, layer by layer of what it imports:")
    for row in layers:
        print(f"  {row['added_bytes'] / MIB:+6.1f} MiB -> {row['rss_bytes'] / MIB:6.1f} MiB  {row['layer']}")
    red = result["redis"]
    print(f"Redis: {red['bytes_per_queued_job']:.0f} bytes per queued job, "
          f"{red['bytes_per_retained_completed_job']:.0f} bytes per retained completed job ({outcome})")
    for shape, row in list(completed_kinds.items())[:10]:
        print(f"  {row['bytes'] / args.jobs:8.0f} B/job  {row['keys']:6d} keys  {shape}")
    print(f"  of which syncbridge's own keys (kept for the retention): {own / args.jobs:.0f} B/job; "
          f"RQ's result stream of one job: {results_sample}")
    write_result("memory", result)


if __name__ == "__main__":
    main()
