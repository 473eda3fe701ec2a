"""1,000 provider operations in flight, 2 worker processes: polls must not hold workers.

``--operations`` repositories, each routed to its own Mesa target on the provider sandbox, whose
operations each take ``--op-seconds`` (sandbox setting ``seconds``). One push per repository is
accepted first (jobs queued, no worker yet); then ``syncbridge worker --processes 2`` starts and
the clock runs until every job has ended. If a worker waited for its operation, 1,000 operations
of 30 s on 2 workers would take 1,000 x 30 / 2 s = 4 h; following them by rescheduled polls
(``rq.Retry``) the wall time should stay near 30 s plus the time to trigger them all and the last
poll interval (1, 1, 2, 3, 5, 8, 10, 15 s). Worker CPU time shows how little of it they were busy.

    .venv/bin/python -m bench.inflight          # about 1-2 minutes

Loopback only; bounded by ``--operations`` (max 2,000) and a timeout of op-seconds + 240 s.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench.common import (
    BIN,
    ORG,
    RESULTS,
    Stack,
    cpu_seconds,
    mesa_config,
    percentile,
    rss_bytes,
    sandbox_calls,
    sandbox_settings,
    signed_push,
    wait_terminal,
    wait_workers,
    write_result,
)

# Frames to account for in the worker profile: (label, regex on py-spy's "function (file:line)").
WORKER_FRAMES = [
    ("workers.jobs.sync (our code, all)", r"^sync \(workers/jobs\.py"),
    ("  provider HTTP call (requests)", r"request \(workers/providers/base\.py"),
    ("  Store (job record reads/writes)", r"\(bridge/store\.py"),
    ("  notify", r"\(workers/notify\.py"),
    ("  metrics", r"\(bridge/metrics\.py"),
    ("RQ perform_job (all)", r"perform_job \(rq/worker/base\.py|perform_job \(rq/worker\.py"),
    ("RQ handle_job_retry / scheduling", r"handle_job_retry|schedule_job|retry \(rq/job\.py"),
    ("RQ scheduler (enqueue due jobs)", r"enqueue_scheduled_jobs \(rq/scheduler\.py"),
    ("RQ dequeue", r"dequeue_job_and_maintain_ttl|dequeue_any"),
    ("RQ heartbeat / maintenance", r"heartbeat|clean_registries|run_maintenance_tasks|maintain_heartbeats"),
    ("logging", r"\(logging/__init__\.py"),
    ("redis-py (all commands)", r"execute_command \(redis/client\.py"),
]
POLL_INTERVALS = (1, 1, 2, 3, 5, 8, 10, 15)  # workers.jobs.POLL_INTERVALS, repeated here to explain the bound


def poll_bound(op_seconds: float) -> float:
    """When the first poll at or after ``op_seconds`` happens, counting from the trigger."""
    elapsed, index = 0.0, 0
    while elapsed < op_seconds:
        elapsed += POLL_INTERVALS[min(index, len(POLL_INTERVALS) - 1)]
        index += 1
    return elapsed


def _records(redis: Redis, job_ids: list[str]) -> list[dict[str, str]]:
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(f"syncbridge:job:{job_id}", "repo", "finished_at")
    return [{"repo": (repo or b"").decode(), "finished_at": (at or b"").decode()} for repo, at in pipe.execute()]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def start_profile(pid: int, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy over the worker pool (all its processes) for at most ``seconds``."""
    out = RESULTS / "profile" / "worker.folded"
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    process = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking",
                                "--format", "raw", "--rate", "100", "--duration", str(int(seconds)),
                                "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, out


def finish_profile(spy: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any]:
    """Stop py-spy (it writes its output on SIGINT) and summarise the frames that matter."""
    process, out = spy
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    total, shares = 0, collections.Counter()
    for line in out.read_text().split("\n"):
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        frames = stack.split(";")
        for label, pattern in WORKER_FRAMES:
            if any(re.search(pattern, frame) for frame in frames):
                shares[label] += int(count)
    rows = {label: shares[label] / total if total else 0.0 for label, _ in WORKER_FRAMES}
    print("worker profile (share of GIL-holding samples):")
    for label, share in rows.items():
        print(f"  {share:6.1%}  {label}")
    return {"samples": total, "shares": rows, "folded": str(out.relative_to(RESULTS.parent.parent))}


def enqueue_all(hook: str, repos: list[str]) -> tuple[list[str], dict[int, int], float]:
    """One push per repository (8 client threads); returns job ids, status counts, seconds taken."""
    session_local: dict[int, requests.Session] = {}

    def one(repo: str) -> tuple[int, list[str]]:
        session = session_local.setdefault(threading.get_ident(), requests.Session())
        headers, body = signed_push(f"{ORG}/{repo}", delivery=uuid.uuid4().hex)
        answer = session.post(hook, data=body, headers=headers, timeout=30)
        return answer.status_code, [job["id"] for job in answer.json().get("jobs", [])] if answer.ok else []

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, repos))
    statuses: dict[int, int] = {}
    for status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    return [job for _, jobs in answers for job in jobs], statuses, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--operations", type=int, default=1000, help="operations in flight (max 2000)")
    parser.add_argument("--op-seconds", type=float, default=30, help="how long each provider operation takes")
    parser.add_argument("--processes", type=int, default=2, help="syncbridge worker --processes")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker processes meanwhile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if not 0 < args.operations <= 2000 or not 0 < args.op_seconds <= 120 or not 0 < args.processes <= 8:
        parser.error("--operations must be in (0, 2000], --op-seconds in (0, 120], --processes in (0, 8]")
    repos = [f"r{index:04d}" for index in range(args.operations)]
    with Stack("inflight", keep=args.keep) as stack:
        sandbox_url, _ = stack.sandbox()
        sandbox_settings(sandbox_url, seconds=args.op_seconds)
        stack.write_config(mesa_config(sandbox_url, repos))
        base, _ = stack.web()
        redis = Redis.from_url(stack.redis_url)
        job_ids, statuses, enqueue_seconds = enqueue_all(f"{base}/hooks/github", repos)
        print(f"{len(job_ids)} jobs queued by {args.operations} pushes in {enqueue_seconds:.1f} s ({statuses})")

        t0 = time.time()
        worker = stack.worker(args.processes)
        wait_workers(redis, args.processes)
        registered = time.time()
        spy = start_profile(worker.pid, args.op_seconds + 60) if args.profile else None
        finished, outcome = wait_terminal(redis, job_ids, timeout=args.op_seconds + 240)
        worker_cpu = cpu_seconds([worker.pid])
        ended = {job_id: record for job_id, record in zip(job_ids, _records(redis, job_ids), strict=True)}
        worker_rss = rss_bytes(worker.pid)
        calls = sandbox_calls(sandbox_url)
        worker_log = stack.log("worker-0")
        peak_rss = max(worker_rss.values())
        profile = finish_profile(spy) if spy is not None else None

    triggers = sorted(call["at"] for call in calls if call["method"] == "POST")
    trigger_at = {call["path"].split("/upstream/syncs")[0].rsplit("/", 1)[-1]: call["at"]
                  for call in calls if call["method"] == "POST"}
    # How long after its operation finished (trigger + op-seconds) each job was recorded as ended.
    lateness = [_epoch(record["finished_at"]) - trigger_at[record["repo"].rsplit("/", 1)[-1]] - args.op_seconds
                for record in ended.values() if record.get("finished_at") and record["repo"].rsplit("/", 1)[-1]
                in trigger_at]
    polls = sum(1 for call in calls if call["method"] == "GET")
    wall = finished - t0
    last_trigger = triggers[-1] - t0 if triggers else float("nan")
    bound = last_trigger + poll_bound(args.op_seconds)
    result: dict[str, Any] = {
        "params": vars(args),
        "enqueue": {"pushes": args.operations, "statuses": statuses, "seconds": enqueue_seconds},
        "jobs": len(job_ids), "job_statuses": outcome,
        "worker_registered_after_s": registered - t0,
        "triggers": len(triggers), "polls": polls,
        "first_trigger_s": triggers[0] - t0 if triggers else None, "last_trigger_s": last_trigger,
        "wall_s": wall, "wall_over_op_seconds": wall / args.op_seconds,
        "expected_bound_s": bound,
        "serial_if_workers_waited_s": args.operations * args.op_seconds / args.processes,
        "worker_cpu_s": worker_cpu, "worker_busy_fraction": worker_cpu / (wall * args.processes),
        "worker_rss_bytes": worker_rss, "worker_rss_max_bytes": peak_rss,
        "worker_tracebacks": worker_log.count("Traceback"),
        "executions": len(triggers) + polls,
        "worker_cpu_ms_per_execution": worker_cpu * 1000 / (len(triggers) + polls) if triggers else None,
        "ended_after_operation_s": {"p50": percentile(lateness, 50), "p99": percentile(lateness, 99),
                                    "max": max(lateness, default=float("nan"))},
        "profile": profile,
    }
    result["targets"] = {
        "all_completed": outcome.get("completed", 0) == len(job_ids) == args.operations,
        "operations_never_hold_a_worker": wall < 2 * args.op_seconds + 60,
    }
    print(f"{args.operations} operations of {args.op_seconds:g} s, {args.processes} worker processes: all ended "
          f"{wall:.1f} s after the workers started ({wall / args.op_seconds:.2f}x the operation time; "
          f"{result['serial_if_workers_waited_s']:.0f} s if each held a worker)")
    print(f"  triggers {len(triggers)} (first {result['first_trigger_s']:.1f} s, last {last_trigger:.1f} s), "
          f"polls {polls}; bound from the poll schedule {bound:.1f} s; worker CPU {worker_cpu:.1f} s "
          f"({result['worker_busy_fraction']:.0%} of {args.processes} processes); statuses {outcome}")
    late = result["ended_after_operation_s"]
    print(f"  a job ended p50 {late['p50']:.1f} s / p99 {late['p99']:.1f} s / max {late['max']:.1f} s after its "
          f"operation finished; worker CPU {result['worker_cpu_ms_per_execution']:.1f} ms per execution")
    for name, met in result["targets"].items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")
    write_result("inflight", result)


if __name__ == "__main__":
    main()
