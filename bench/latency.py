"""Push -> provider call latency with an idle worker: when did the provider hear of a push?

``syncbridge web`` and ``syncbridge worker`` (its default processes) on an embedded Redis (AOF
on), targets on the provider sandbox. ``--pushes`` signed pushes are posted one at a time,
``--spacing`` seconds apart, each to its own repository routed to its own Mesa target: no push
coalesces with another, and none waits for its target's lane (one running sync per target,
``min_interval`` between starts). Each push's send time (taken just before the POST) is paired
with the sandbox's record of that target's trigger (``POST .../upstream/syncs``; its ``at`` is
when the sandbox received it): latency = at - sent. Four warm-up pushes to other targets go
first, so the worker has run its code paths once.

    .venv/bin/python -m bench.latency          # 100 pushes, 0.2 s apart: about 35 s

Loopback only; bounded by ``--pushes`` (max 1000) and the spacing.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import requests
from redis import Redis

from bench.common import (
    ORG,
    Stack,
    mesa_config,
    percentile,
    sandbox_calls,
    signed_push,
    wait_terminal,
    wait_workers,
    write_result,
)

TRIGGER_SUFFIX = "/upstream/syncs"


def push(session: requests.Session, hook: str, repo: str) -> dict[str, Any]:
    """POST one signed push; returns when it was sent and answered, its status and job ids."""
    headers, body = signed_push(f"{ORG}/{repo}", delivery=uuid.uuid4().hex)
    sent = time.time()
    answer = session.post(hook, data=body, headers=headers, timeout=10)
    answered = time.time()
    jobs = [job["id"] for job in answer.json().get("jobs", [])] if answer.ok else []
    return {"repo": repo, "sent": sent, "answered": answered, "status": answer.status_code, "jobs": jobs}


def _epoch(iso: str) -> float:
    """A job timestamp (ISO 8601 with ``Z``) as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def triggers_by_repo(sandbox_url: str) -> dict[str, list[float]]:
    """Times (``at``) of the sandbox's trigger calls, per repository, oldest first."""
    found: dict[str, list[float]] = defaultdict(list)
    for call in sandbox_calls(sandbox_url):
        if call["method"] == "POST" and call["path"].endswith(TRIGGER_SUFFIX):
            repo = call["path"][: -len(TRIGGER_SUFFIX)].rsplit("/", 1)[-1]
            found[repo].append(call["at"])
    return {repo: sorted(times) for repo, times in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=100, help="measured pushes (max 1000)")
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between pushes (min 0.05)")
    parser.add_argument("--processes", type=int, default=None, help="syncbridge worker --processes (default: its own)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if not 0 < args.pushes <= 1000 or args.spacing < 0.05:
        parser.error("--pushes must be in (0, 1000] and --spacing >= 0.05")
    repos = [f"lat{index:04d}" for index in range(args.pushes)]
    warmups = [f"warm{index}" for index in range(4)]
    with Stack("latency", keep=args.keep) as stack:
        sandbox_url, _ = stack.sandbox()
        stack.write_config(mesa_config(sandbox_url, warmups + repos))
        base, _ = stack.web()
        redis = Redis.from_url(stack.redis_url)
        stack.worker(args.processes)
        wait_workers(redis, args.processes or 1)
        hook = f"{base}/hooks/github"
        session = requests.Session()
        warm = [push(session, hook, repo) for repo in warmups]
        wait_terminal(redis, [job for sent in warm for job in sent["jobs"]], timeout=60)
        requests.delete(f"{sandbox_url}/_sandbox/calls", timeout=10).raise_for_status()
        time.sleep(1.0)

        pushes = []
        start = time.monotonic()
        for index in range(args.pushes):
            time.sleep(max(0.0, start + index * args.spacing - time.monotonic()))
            pushes.append(push(session, hook, repos[index]))
        deadline = time.monotonic() + 30
        while sum(len(times) for times in triggers_by_repo(sandbox_url).values()) < args.pushes:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        triggers = triggers_by_repo(sandbox_url)
        job_ids = {job for sent in pushes for job in sent["jobs"]}
        pipe = redis.pipeline(transaction=False)
        for item in pushes:
            pipe.hget(f"syncbridge:job:{item['jobs'][0]}", "started_at") if item["jobs"] else pipe.echo("")
        for item, started in zip(pushes, pipe.execute(), strict=True):
            item["started"] = _epoch(started.decode()) if started else None
        worker_errors = [line for line in stack.log("worker-0").splitlines() if "Traceback" in line][:5]

    latencies, receiver, unmatched = [], [], 0
    for repo in repos:
        sent = [item for item in pushes if item["repo"] == repo]
        times = triggers.get(repo, [])
        for item, at in zip(sent, times, strict=False):
            if at < item["sent"]:
                unmatched += 1
                continue
            latencies.append((at - item["sent"]) * 1000)
        unmatched += max(0, len(sent) - len(times))
    receiver = [(item["answered"] - item["sent"]) * 1000 for item in pushes]
    to_start = [(item["started"] - item["sent"]) * 1000 for item in pushes if item.get("started")]
    result = {
        "params": vars(args),
        "pushes": len(pushes), "accepted_202": sum(item["status"] == 202 for item in pushes),
        "distinct_jobs": len(job_ids), "provider_triggers": sum(len(times) for times in triggers.values()),
        "matched": len(latencies), "unmatched": unmatched,
        "push_to_call_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                            "p99": percentile(latencies, 99), "max": max(latencies, default=float("nan")),
                            "mean": statistics.fmean(latencies) if latencies else float("nan")},
        "receiver_response_ms": {"p50": percentile(receiver, 50), "p99": percentile(receiver, 99)},
        "push_to_worker_start_ms": {"p50": percentile(to_start, 50), "p99": percentile(to_start, 99)},
        "worker_errors": worker_errors,
    }
    result["targets"] = {"p50_at_most_30ms": result["push_to_call_ms"]["p50"] <= 30}
    lat = result["push_to_call_ms"]
    print(f"{result['pushes']} pushes ({result['accepted_202']} accepted, {result['distinct_jobs']} jobs), "
          f"{result['provider_triggers']} provider triggers, {result['matched']} matched")
    print(f"push -> provider call: p50 {lat['p50']:.1f} ms  p90 {lat['p90']:.1f} ms  p99 {lat['p99']:.1f} ms  "
          f"max {lat['max']:.1f} ms")
    print(f"  of which: receiver answered p50 {result['receiver_response_ms']['p50']:.1f} ms, worker started the "
          f"job (started_at) p50 {result['push_to_worker_start_ms']['p50']:.1f} ms after the send")
    print(f"  target p50 <= 30 ms: {'met' if result['targets']['p50_at_most_30ms'] else 'NOT met'}")
    write_result("latency", result)


if __name__ == "__main__":
    main()
