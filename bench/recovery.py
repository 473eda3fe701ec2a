"""How long a killed worker costs: from a new worker's start to the end of the syncs it took over.

The scenario of issue 16, ``--rounds`` times on one stack (an embedded Redis with AOF, the provider
sandbox, ``syncbridge web``): Redis is restarted under the running web and worker; a push; once its
trigger call is at the provider (which answers in 3 s), a second push to the same target, which
queues the follow-up in the same lane; then the whole ``syncbridge worker`` (pool, worker
processes, the scheduler on its thread) is SIGKILLed, as an OOM kill or a Heroku restart past its
30 s would, and a new one started. Per round: seconds from the new worker's start until the killed
sync completed, and until the follow-up completed (the issue asks for both within 30 s), and how
many triggers the provider got (3: the killed sync's, sent again by the new worker, and the
follow-up's).

    .venv/bin/python -m bench.recovery            # 5 rounds: about 3 minutes

Loopback only; bounded by ``--rounds`` (max 20).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import datetime
from typing import Any

import psutil
import requests
from redis import Redis

from bench.common import (
    ORG,
    Stack,
    mesa_config,
    sandbox_calls,
    sandbox_settings,
    signed_push,
    wait_terminal,
    write_result,
)

REPO = "recovery"
BOUND = 30.0  # seconds, issue 16


def push(hook: str) -> str:
    """One signed push to the target; its job id."""
    headers, body = signed_push(f"{ORG}/{REPO}", delivery=uuid.uuid4().hex)
    answer = requests.post(hook, data=body, headers=headers, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["jobs"][0]["id"])


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it, all at once (none gets to clean up)."""
    process = psutil.Process(pid)
    members = [process, *process.children(recursive=True)]
    for member in members:
        member.kill()
    psutil.wait_procs(members, timeout=10)


def finished_at(redis: Redis, job_id: str) -> float:
    """When the job ended (epoch seconds), from its record; nan if it has not."""
    stamp = redis.hget(f"syncbridge:job:{job_id}", "finished_at")
    return datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")).timestamp() if stamp else float("nan")


def round_once(stack: Stack, redis: Redis, hook: str, sandbox_url: str, index: int) -> dict[str, Any]:
    stack.redis_server.kill()  # restarted under the running web and worker
    stack.redis_server.start()
    warm = push(hook)
    wait_terminal(redis, [warm], timeout=60)
    sandbox_settings(sandbox_url, latency=3)
    calls = len(sandbox_calls(sandbox_url))
    first = push(hook)
    deadline = time.monotonic() + 30
    while len(sandbox_calls(sandbox_url)) == calls and time.monotonic() < deadline:
        time.sleep(0.05)
    follow_up = push(hook)
    kill_tree(stack.children[-1].pid)
    sandbox_settings(sandbox_url, latency=0)
    started = time.time()
    stack.worker(index=index + 1)
    _, counts = wait_terminal(redis, [first, follow_up], timeout=120)
    triggers = [call for call in sandbox_calls(sandbox_url)[calls:] if call["method"] == "POST"]
    return {"first_s": finished_at(redis, first) - started, "follow_up_s": finished_at(redis, follow_up) - started,
            "counts": counts, "triggers": len(triggers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="kills (max 20)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if not 0 < args.rounds <= 20:
        parser.error("--rounds must be in (0, 20]")
    with Stack("recovery", keep=args.keep) as stack:
        sandbox_url, _ = stack.sandbox()
        stack.write_config(mesa_config(sandbox_url, [REPO]))
        base, _ = stack.web()
        redis = Redis.from_url(stack.redis_url)
        stack.worker(index=0)
        rounds = [round_once(stack, redis, f"{base}/hooks/github", sandbox_url, index) for index in range(args.rounds)]
    worst = [max(item["first_s"], item["follow_up_s"]) for item in rounds]
    result = {"params": vars(args), "rounds": rounds,
              "both_completed_s": {"median": statistics.median(worst), "max": max(worst)},
              "within_bound": sum(seconds <= BOUND for seconds in worst)}
    for number, item in enumerate(rounds, 1):
        print(f"round {number}: killed sync completed {item['first_s']:.1f} s, follow-up {item['follow_up_s']:.1f} s "
              f"after the new worker started ({item['counts']}, {item['triggers']} triggers)")
    summary = result["both_completed_s"]
    print(f"both completed: median {summary['median']:.1f} s, max {summary['max']:.1f} s; "
          f"{result['within_bound']}/{len(rounds)} within {BOUND:.0f} s")
    write_result("recovery", result)


if __name__ == "__main__":
    main()
