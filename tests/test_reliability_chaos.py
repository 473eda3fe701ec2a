"""Provider chaos: the sandbox answers 30% of calls with a 500, a 429 with Retry-After, or a timeout.

Twenty-three syncs run through a real RQ worker (tests/driver.py's ``drive``, which skips the waits
but records them) against the sandbox over real HTTP: twenty on their own targets (their own lanes,
so nothing coalesces) under seeded chaos, plus one target each whose first call answers 401, 403 or
404. Each execution of a sync makes exactly one provider call, so the k-th call the sandbox logged
for a target is the k-th execution of its job, and the wait RQ was asked for after it is the k-th
wait drive() saw for that job: that is how each Retry-After is checked against the answer that
carried it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import requests
from redis import Redis
from rq import Queue

from bridge.app import create_app
from bridge.config import Config
from bridge.queueing import QUEUE_NAME
from tests.conftest import SECRET, TOKEN, github_headers, sandbox_calls
from tests.driver import drive
from tests.test_hooks import push_body
from tests.test_reliability import record_numbers

CHAOS = {"rate": 0.3, "seed": 6, "timeout": 1.0}  # the sandbox holds a "timeout" call 1 s...
REQUEST_TIMEOUT = 0.5  # ...and the bridge gives up on it after 0.5 s
RETRIES = 10
POLLS = 2  # each sync: one trigger and two polls when nothing goes wrong
CHAOS_TARGETS = [f"chaos-{n:02d}" for n in range(20)]
PERMANENT = {401: "API key revoked by an administrator", 403: "Key lacks the repo:sync scope",
             404: "Repository acme/perm-404 not found"}
# Queued ahead of the chaos, so they hit the first triggers (the jobs run in the route's target order):
# the three permanent targets, then three chaos targets with Retry-Afters far above any backoff.
LONG_RETRY_AFTER = {"chaos-00": (429, 7), "chaos-01": (503, 11), "chaos-02": (429, 30)}
CHAOS_RETRY_AFTER = 1  # what the sandbox's chaos 429s carry


def chaos_config(sandbox_url: str) -> str:
    names = [f"perm-{status}" for status in PERMANENT] + CHAOS_TARGETS
    targets = "".join(
        f"  {name}: {{provider: mesa, base_url: '{sandbox_url}/mesa/v1', org: acme, repo: {name}, token: {TOKEN},"
        f" min_interval: 0, retries: {RETRIES}, request_timeout: {REQUEST_TIMEOUT}}}\n" for name in names)
    return (f"sources:\n  github: {{kind: github, secret: {SECRET}}}\ntargets:\n{targets}"
            f"routes:\n  - {{source: github, repo: acme/widgets, targets: [{', '.join(names)}]}}\n")


def drive_each(redis: Redis, max_rounds: int = 400) -> dict[str, list[int]]:
    """drive(), one round at a time, returning each job's scheduled waits in order.

    After a round, drive() has re-enqueued the jobs it found scheduled, in the order of the
    intervals it returned, and nothing else is queued: the queue names the intervals' jobs.
    """
    queue = Queue(QUEUE_NAME, connection=redis)
    waits: dict[str, list[int]] = defaultdict(list)
    for _ in range(max_rounds):
        intervals = drive(redis, max_rounds=1, until_idle=False)
        requeued = queue.job_ids
        assert len(requeued) == len(intervals), (requeued, intervals)
        if not intervals:
            return waits
        for job_id, wait in zip(requeued, intervals, strict=True):
            waits[job_id].append(wait)
    raise AssertionError(f"syncs still running after {max_rounds} rounds")


def retries_counted(client: Any) -> int:
    text = client.get("/metrics").get_data(as_text=True)
    return int(sum(float(value) for value in re.findall(r'^syncbridge_retries_total\{[^}]*\} (\S+)$', text, re.M)))


def test_syncs_complete_under_provider_chaos_and_honour_retry_after(
        write_config: Callable[[str], Config], redis: Redis, sandbox: Any, request: pytest.FixtureRequest) -> None:
    client = create_app(write_config(chaos_config(sandbox.url)), redis).test_client()
    requests.put(f"{sandbox.url}/_sandbox/settings/mesa", json={"polls": POLLS}, timeout=5).raise_for_status()
    queued = ([{"status": status, "message": message} for status, message in PERMANENT.items()]
              + [{"status": status, "retry_after": seconds} for status, seconds in LONG_RETRY_AFTER.values()])
    requests.post(f"{sandbox.url}/_sandbox/faults/mesa", json={"responses": queued, "chaos": CHAOS},
                  timeout=5).raise_for_status()

    body = push_body()
    answer = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="chaos-1"))
    assert answer.status_code == 202
    jobs = {job["target"]: job["id"] for job in answer.get_json()["jobs"]}
    assert len(jobs) == 23  # one per target: separate lanes, nothing coalesced
    waits = drive_each(redis)

    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    log = sandbox_calls(sandbox, "mesa")
    for call in log:
        calls[call["path"].split("/")[4]].append(call)  # /mesa/v1/acme/<target>/upstream/syncs[/<id>]
    first = [call["path"].split("/")[4] for call in log[:6]]
    assert first == [*[f"perm-{status}" for status in PERMANENT], *LONG_RETRY_AFTER], "queued faults landed elsewhere"
    records = {target: client.get(f"/jobs/{job_id}").get_json() for target, job_id in jobs.items()}

    # 401, 403, 404: one call, failed at once, with the provider's own reason.
    for status, message in PERMANENT.items():
        target = f"perm-{status}"
        assert len(calls[target]) == 1 and waits.get(jobs[target], []) == []
        assert records[target]["status"] == "failed"
        assert records[target]["error"] == (f"mesa answered {status} to POST /mesa/v1/acme/{target}/upstream/syncs: "
                                            f"{message}")

    # Every chaos sync completes, each within its bounds, and waits at least as long as it was told.
    honoured = []
    for target in CHAOS_TARGETS:
        record, mine, told = records[target], calls[target], waits[jobs[target]]
        assert record["status"] == "completed" and record["error"] is None, record
        assert len(told) == len(mine) - 1, (target, len(told), len(mine))  # one call per execution
        assert 1 <= record["attempts"] <= RETRIES + 1
        assert len(mine) <= (RETRIES + 1) * (POLLS + 1)
        for index, call in enumerate(mine[:-1]):
            if call["status"] == 429 or (call["status"] or 0) >= 500:
                expected = LONG_RETRY_AFTER[target][1] if index == 0 and target in LONG_RETRY_AFTER else (
                    CHAOS_RETRY_AFTER if call["status"] == 429 else None)
                if expected is not None:
                    assert told[index] >= expected, (target, index, call["status"], told)
                    honoured.append((call["status"], expected, told[index]))
    assert [wait for status, expected, wait in honoured if expected > CHAOS_RETRY_AFTER] == [7, 11, 30]

    statuses = [call["status"] for target in CHAOS_TARGETS for call in calls[target]]
    errors_5xx = sum(1 for status in statuses if (status or 0) >= 500)
    errors_429 = statuses.count(429)
    retried = retries_counted(client)
    timeouts = retried - errors_5xx - errors_429  # every transient failure is retried once; the rest timed out
    assert timeouts >= 0
    failures = retried
    record_numbers(request, "chaos", syncs=len(CHAOS_TARGETS), calls=len(statuses), failures=failures,
                   failure_share=round(failures / len(statuses), 3), errors_5xx=errors_5xx, errors_429=errors_429,
                   timeouts=timeouts, retry_after_checked=len(honoured),
                   max_attempts=max(records[t]["attempts"] for t in CHAOS_TARGETS),
                   max_calls_per_sync=max(len(calls[t]) for t in CHAOS_TARGETS),
                   permanent_calls={status: len(calls[f"perm-{status}"]) for status in PERMANENT})
