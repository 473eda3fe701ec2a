"""Burst coalescing: 1,000 pushes in 10 s to one repository -> provider syncs per target.

``syncbridge web`` and ``syncbridge worker`` on an embedded Redis (AOF on); the repository
``acme/widgets`` is routed to ``--targets`` Mesa targets on the provider sandbox, each
operation taking ``--sync-seconds``. ``--pushes`` signed pushes (distinct delivery ids, distinct
commits) are paced evenly over ``--burst`` seconds by a few client threads. Once every job has
ended, the sandbox's call log says how many syncs each target was asked for (expected: at most
2 per target: the one the first push started, and one follow-up covering all later pushes).

It also checks that coalescing lost nothing: per target, the last sync started after the last
push was sent, so the newest commit is covered.

    .venv/bin/python -m bench.coalesce         # 1,000 pushes in 10 s, then the syncs: about 40 s

Loopback only; bounded by ``--pushes`` (max 5,000) and ``--burst`` (max 30 s).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import requests
from redis import Redis

from bench.common import (
    ORG,
    SANDBOX_TOKEN,
    SECRET,
    Stack,
    sandbox_calls,
    sandbox_settings,
    signed_push,
    wait_terminal,
    wait_workers,
    write_result,
)

REPO = "widgets"
CLIENT_THREADS = 8


def config(sandbox_url: str, targets: int, min_interval: str | None) -> dict[str, Any]:
    """One repository routed to ``targets`` Mesa targets (Mesa repos widgets-0, widgets-1...)."""
    names = [f"mesa-{index}" for index in range(targets)]
    target_settings: dict[str, Any] = {}
    for index, name in enumerate(names):
        target_settings[name] = {"provider": "mesa", "base_url": f"{sandbox_url}/mesa/v1", "org": ORG,
                                 "repo": f"{REPO}-{index}", "token": SANDBOX_TOKEN}
        if min_interval is not None:
            target_settings[name]["min_interval"] = min_interval
    return {"sources": {"github": {"kind": "github", "secret": SECRET}}, "targets": target_settings,
            "routes": [{"source": "github", "repo": f"{ORG}/{REPO}", "targets": names}]}


def burst(hook: str, pushes: int, seconds: float) -> list[dict[str, Any]]:
    """Send ``pushes`` pushes evenly over ``seconds``; returns each one's send time, status and job ids."""
    results: list[dict[str, Any]] = [{} for _ in range(pushes)]
    start = time.monotonic() + 0.2
    offset = time.time() - time.monotonic()

    def client(first: int) -> None:
        session = requests.Session()
        for index in range(first, pushes, CLIENT_THREADS):
            time.sleep(max(0.0, start + index * seconds / pushes - time.monotonic()))
            headers, body = signed_push(f"{ORG}/{REPO}", delivery=uuid.uuid4().hex)
            sent = time.monotonic() + offset
            answer = session.post(hook, data=body, headers=headers, timeout=10)
            jobs = {job["target"]: job["id"] for job in answer.json().get("jobs", [])} if answer.ok else {}
            results[index] = {"sent": sent, "status": answer.status_code, "jobs": jobs}

    threads = [threading.Thread(target=client, args=(first,)) for first in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=1000, help="pushes in the burst (max 5000)")
    parser.add_argument("--burst", type=float, default=10, help="seconds the burst lasts (max 30)")
    parser.add_argument("--targets", type=int, default=3, help="Mesa targets the repository is routed to")
    parser.add_argument("--sync-seconds", type=float, default=5, help="how long each provider operation takes")
    parser.add_argument("--min-interval", default=None, help="targets' min_interval (default: the config default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if not 0 < args.pushes <= 5000 or not 0 < args.burst <= 30 or not 0 < args.targets <= 20:
        parser.error("--pushes must be in (0, 5000], --burst in (0, 30], --targets in (0, 20]")
    with Stack("coalesce", keep=args.keep) as stack:
        sandbox_url, _ = stack.sandbox()
        sandbox_settings(sandbox_url, seconds=args.sync_seconds)
        stack.write_config(config(sandbox_url, args.targets, args.min_interval))
        base, _ = stack.web()
        redis = Redis.from_url(stack.redis_url)
        stack.worker()
        wait_workers(redis, 1)
        started = time.time()
        sent = burst(f"{base}/hooks/github", args.pushes, args.burst)
        sent_for = time.time() - started
        job_ids = sorted({job for item in sent for job in item.get("jobs", {}).values()})
        finished, statuses = wait_terminal(redis, job_ids, timeout=args.sync_seconds * 3 + 90)
        calls = sandbox_calls(sandbox_url)

    triggers: dict[str, list[float]] = defaultdict(list)
    polls: Counter[str] = Counter()
    for call in calls:
        repo = call["path"].split("/upstream/syncs")[0].rsplit("/", 1)[-1]
        if call["method"] == "POST" and call["path"].endswith("/upstream/syncs"):
            triggers[repo].append(call["at"])
        elif call["method"] == "GET":
            polls[repo] += 1
    distinct = {(target, job) for item in sent for target, job in item.get("jobs", {}).items()}
    jobs_per_target = Counter(target for target, _ in distinct)
    last_sent = max(item["sent"] for item in sent if item.get("status") == 202)
    per_target = {}
    for index in range(args.targets):
        repo, name = f"{REPO}-{index}", f"mesa-{index}"
        per_target[name] = {"syncs": len(triggers.get(repo, [])), "polls": polls.get(repo, 0),
                            "jobs": jobs_per_target.get(name, 0),
                            "newest_push_covered": bool(triggers.get(repo)) and max(triggers[repo]) > last_sent}
    accepted = sum(item.get("status") == 202 for item in sent)
    total_syncs = sum(row["syncs"] for row in per_target.values())
    result = {
        "params": vars(args), "pushes": len(sent), "accepted_202": accepted,
        "other_statuses": dict(Counter(item.get("status") for item in sent if item.get("status") != 202)),
        "burst_seconds_actual": sent_for, "jobs": len(job_ids), "job_statuses": statuses,
        "all_done_after_burst_s": finished - (started + sent_for), "per_target": per_target,
        "provider_syncs": total_syncs,
        "pushes_per_sync": accepted * args.targets / total_syncs if total_syncs else None,
        "max_syncs_per_target": max(row["syncs"] for row in per_target.values()),
    }
    result["targets"] = {"at_most_2_syncs_per_target": result["max_syncs_per_target"] <= 2,
                         "newest_push_covered": all(row["newest_push_covered"] for row in per_target.values())}
    print(f"{result['pushes']} pushes in {sent_for:.1f} s ({accepted} accepted) -> {len(job_ids)} jobs, "
          f"{total_syncs} provider syncs over {args.targets} targets; all ended "
          f"{result['all_done_after_burst_s']:.1f} s after the burst ({statuses})")
    for name, row in per_target.items():
        print(f"  {name}: {row['syncs']} syncs, {row['jobs']} jobs, {row['polls']} polls, "
              f"newest push covered: {row['newest_push_covered']}")
    for name, met in result["targets"].items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")
    write_result("coalesce", result)


if __name__ == "__main__":
    main()
