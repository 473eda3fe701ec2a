"""Receiver throughput and latency: ``syncbridge web`` against adnanh/webhook, in the same run.

Both servers verify the same HMAC-SHA256 signature over the same GitHub push body, at each of
bench.payloads' sizes (minimal ~0.6 KB, typical ~7 KB: the full repository object and one
commit, large ~24 KB: 20 commits); wrk sends it with a new ``X-GitHub-Delivery`` on every
request (bench/wrk/signed_push.lua: run, server, size, round, thread and counter in every id),
so syncbridge stores every one as a new delivery. syncbridge runs as in production:
``syncbridge web`` (granian, its defaults) on an embedded Redis with AOF on. webhook (Debian's
``webhook``) runs a hook whose ``payload-hmac-sha256`` rule checks ``X-Hub-Signature-256`` and
executes ``/bin/true``.

The two alternate (``--rounds`` per size, interleaved, the first server swapped every round).
Afterwards every 2xx that syncbridge answered must be a 202 and a delivery key of its own in
Redis, each listing jobs that exist: the benchmark measured the store path, not redeliveries.

    .venv/bin/python -m bench.receiver                # the comparison (about 4 minutes)
    .venv/bin/python -m bench.receiver --sweep        # server variants and floors (bench.serve)

Loopback only; every wrk run is bounded by ``--duration`` and ``--connections``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench import payloads
from bench.common import (
    HOST,
    ROOT,
    SECRET,
    Stack,
    cpu_seconds,
    free_port,
    load_average,
    mesa_config,
    rss_bytes,
    signed_push,
    wait_http,
    write_result,
)
from bridge.store import delivery_key

LUA = ROOT / "bench" / "wrk" / "signed_push.lua"
REPO = "widgets"
MAX_CONNECTIONS = 64
MAX_DURATION = 30
# (label, processes, threads, bench.serve options): production first (``syncbridge web``'s defaults); two
# processes; the same edge without the group commit and with a log line per delivery; then the floors, what a
# server and framework cost before any of syncbridge's work: bare RSGI and ASGI callables, a Quart view (Flask's
# API on ASGI), a Flask view (WSGI threads, the interface syncbridge used before).
SWEEP: list[tuple[str, int, int, tuple[str, ...]]] = [
    ("syncbridge web (default: 1 process)", 1, 4, ()),
    ("syncbridge web --workers 2", 2, 4, ("--app", "syncbridge")),
    ("1 process, no group commit", 1, 4, ("--no-group-commit",)),
    ("1 process, a log line per delivery", 1, 4, ("--log-every-delivery",)),
    ("floor: bare RSGI, 1 process", 1, 4, ("--app", "rsgi")),
    ("floor: bare ASGI, 1 process", 1, 4, ("--app", "asgi")),
    ("floor: Quart view (ASGI), 1 process", 1, 4, ("--app", "quart")),
    ("floor: Flask view (WSGI, 8 threads), 1 process", 1, 8, ("--app", "flask")),
]


def wrk(url: str, body_path: Path, signature: str, prefix: str, duration: float, connections: int,
        threads: int, workdir: Path, pids: list[int] | None = None) -> dict[str, Any]:
    """One bounded wrk run; returns the Lua summary plus req/s, the non-2xx count and, for ``pids``
    (the server's processes), the CPU time they used per request."""
    out = workdir / f"wrk-{prefix}.json"
    env = {**os.environ, "BENCH_BODY": str(body_path), "BENCH_SIGNATURE": signature, "BENCH_PREFIX": prefix,
           "BENCH_OUT": str(out)}
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "5s",
            "-s", str(LUA), url]
    load = load_average()[0]
    cpu_before = cpu_seconds(pids or [])
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=duration + 30)
    cpu_at_end = cpu_seconds(pids or [])
    # webhook answers before it runs the command: its /bin/true backlog runs on after wrk stops. Wait for
    # the server to go quiet so the next round is not disturbed, and count that CPU against this round.
    drain = wait_quiet(pids or [])
    cpu_used = cpu_seconds(pids or []) - cpu_before
    summary = json.loads(out.read_text())
    ok = sum(count for status, count in summary["statuses"].items() if status.startswith("2"))
    socket_errors = sum(summary["socket_errors"].values())
    summary.update(
        prefix=prefix, ok=ok, non_2xx=summary["requests"] - ok, socket_error_count=socket_errors,
        rps=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["latency_us"]["p50"] / 1000, p99_ms=summary["latency_us"]["p99"] / 1000,
        server_cpu_ms_per_request=cpu_used * 1000 / summary["requests"] if summary["requests"] and pids else None,
        server_cpu_cores=(cpu_at_end - cpu_before) / (summary["duration_us"] / 1e6) if pids else None,
        loadavg_1m_before=load,
        drain_s=drain, cpu_after_load_s=cpu_used - (cpu_at_end - cpu_before),
        # Deliveries fully handled per second: for webhook, including the commands it ran after the load.
        rps_sustained=summary["requests"] / (summary["duration_us"] / 1e6 + drain),
    )
    return summary


def wait_quiet(pids: list[int], limit: float = 60.0, step: float = 0.5, idle_cores: float = 0.05) -> float:
    """Seconds until ``pids`` (and their children) use under ``idle_cores`` of CPU over ``step`` seconds."""
    started = time.monotonic()
    if not pids:
        return 0.0
    last = cpu_seconds(pids)
    while time.monotonic() - started < limit:
        time.sleep(step)
        now = cpu_seconds(pids)
        if now - last < idle_cores * step:
            return time.monotonic() - started - step
        last = now
    return time.monotonic() - started


def start_webhook(stack: Stack) -> tuple[str, subprocess.Popen[bytes]]:
    """adnanh/webhook on a free loopback port with one HMAC-checked hook that runs /bin/true."""
    if shutil.which("webhook") is None:
        raise SystemExit("webhook is not installed: apt-get install -y webhook")
    hooks = [{
        "id": "github", "execute-command": "/bin/true", "response-message": "ok",
        "trigger-rule-mismatch-http-response-code": 401,
        "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": SECRET,
                                   "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
    }]
    path = stack.dir / "hooks.json"
    path.write_text(json.dumps(hooks))
    port = free_port()
    process = stack.spawn("webhook", ["webhook", "-hooks", str(path), "-ip", HOST, "-port", str(port)])
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 10
    while True:  # webhook has no health route: any HTTP answer means it listens
        try:
            requests.get(f"{url}/", timeout=1)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"webhook did not start: {stack.log('webhook')}") from None
            time.sleep(0.1)
    return f"{url}/hooks/github", process


def sanity(url: str, headers: dict[str, str], body: bytes) -> None:
    """A correctly signed push is a 2xx and a wrongly signed one is not: both servers really verify."""
    good = requests.post(url, data=body, headers={**headers, "X-GitHub-Delivery": uuid.uuid4().hex}, timeout=10)
    bad_headers = {**headers, "X-GitHub-Delivery": uuid.uuid4().hex, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    bad = requests.post(url, data=body, headers=bad_headers, timeout=10)
    if not good.ok or bad.ok:
        raise RuntimeError(f"{url}: signed push -> {good.status_code}, bad signature -> {bad.status_code}")


def stored_deliveries(redis: Redis, prefix: str) -> tuple[int, int]:
    """Delivery keys whose id starts with ``prefix``, and how many of them list a job that exists."""
    keys = list(redis.scan_iter(match=delivery_key("github", f"{prefix}*"), count=1000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.lrange(key, 0, -1)
    job_lists = pipe.execute()
    job_ids = {job_id for ids in job_lists for job_id in ids}
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(f"syncbridge:job:{job_id.decode()}")
    existing = {job_id for job_id, exists in zip(job_ids, pipe.execute(), strict=True) if exists}
    with_job = sum(1 for ids in job_lists if ids and all(job_id in existing for job_id in ids))
    return len(keys), with_job


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds, plus totals of what must be zero."""
    return {
        "rounds": len(runs),
        "rps_median": statistics.median(run["rps"] for run in runs),
        "rps_sustained_median": statistics.median(run["rps_sustained"] for run in runs),
        "drain_s_median": statistics.median(run["drain_s"] for run in runs),
        "p50_ms_median": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms_median": statistics.median(run["p99_ms"] for run in runs),
        "p99_ms_worst": max(run["p99_ms"] for run in runs),
        # Best round: the one least disturbed by other work on the machine.
        "rps_best": max(run["rps"] for run in runs),
        "p50_ms_best": min(run["p50_ms"] for run in runs),
        "p99_ms_best": min(run["p99_ms"] for run in runs),
        "requests": sum(run["requests"] for run in runs),
        "ok": sum(run["ok"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_error_count"] for run in runs),
        "server_cpu_ms_per_request_median": statistics.median(run["server_cpu_ms_per_request"] or 0 for run in runs),
        "server_cpu_cores_median": statistics.median(run["server_cpu_cores"] or 0 for run in runs),
    }


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of syncbridge and webhook at every payload size; what syncbridge stored, checked."""
    run_id = uuid.uuid4().hex[:8]
    sizes = args.sizes
    with Stack("receiver", keep=args.keep) as stack:
        stack.write_config(mesa_config(f"http://{HOST}:9", [REPO]))
        base, web = stack.web(workers=args.web_workers, threads=args.web_threads)
        webhook_url, webhook = start_webhook(stack)
        servers = {"syncbridge": f"{base}/hooks/github", "webhook": webhook_url}
        # CPU accounting: granian (main process and workers) plus Redis, against webhook and its /bin/true children.
        pids = {"syncbridge": [web.pid, stack.redis_server.process.pid], "webhook": [webhook.pid]}
        bodies: dict[str, tuple[Path, str]] = {}
        for size in sizes:
            headers, body = signed_push(f"acme/{REPO}", size=size)
            path = stack.dir / f"body-{size}.json"
            path.write_bytes(body)
            bodies[size] = (path, headers["X-Hub-Signature-256"])
            for url in servers.values():
                sanity(url, headers, body)

        every: list[dict[str, Any]] = []  # every syncbridge run, warm-up included: all must be stored

        def one(name: str, size: str, label: str, duration: float, connections: int | None = None) -> dict[str, Any]:
            path, signature = bodies[size]
            result = wrk(servers[name], path, signature, f"{run_id}-{name}-{size}-{label}", duration,
                         connections or args.connections, args.wrk_threads if connections is None else 1, stack.dir,
                         pids[name])
            result["body_bytes"] = path.stat().st_size
            if name == "syncbridge":
                every.append(result)
            print(f"  {size:<8} {name:<10} {label:<7} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                  f"p99 {result['p99_ms']:7.2f} ms  non-2xx {result['non_2xx']}  socket errors "
                  f"{result['socket_error_count']}  server CPU {result['server_cpu_ms_per_request']:.3f} ms/req "
                  f"({result['server_cpu_cores']:.2f} cores)  load {result['loadavg_1m_before']:.1f}  "
                  f"busy {result['drain_s']:.1f} s after the load")
            return result

        for size in sizes:
            for name in servers:
                one(name, size, "warmup", args.warmup)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {size: {name: [] for name in servers} for size in sizes}
        for index in range(args.rounds):
            for size in sizes:
                order = list(servers) if (index + sizes.index(size)) % 2 == 0 else list(reversed(servers))
                for name in order:
                    runs[size][name].append(one(name, size, f"r{index + 1}", args.duration))
        # Light load: few connections, neither server saturated: latency is service time, not queueing.
        light: dict[str, dict[str, list[dict[str, Any]]]] = {size: {name: [] for name in servers} for size in sizes}
        for index in range(args.light_rounds):
            for size in sizes:
                order = list(reversed(servers)) if index % 2 == 0 else list(servers)
                for name in order:
                    light[size][name].append(one(name, size, f"l{index + 1}", args.duration, args.light_connections))

        redis = Redis.from_url(stack.redis_url)
        aof = redis.info("persistence")["aof_enabled"]
        stored, with_job = stored_deliveries(redis, f"{run_id}-syncbridge-")
        web_rss = sum(rss_bytes(web.pid).values())
        web_log = stack.log(f"web-{base.rsplit(':', 1)[1]}")
        stack.stop(web)

    accepted = sum(run["ok"] for run in every)
    created = sum(run["statuses"].get("202", 0) for run in every)
    sent = sum(run["sent"] for run in every)
    per_size = {}
    for size in sizes:
        sb, wh = summarize(runs[size]["syncbridge"]), summarize(runs[size]["webhook"])
        light_summary = {name: summarize(rows) for name, rows in light[size].items() if rows}
        per_size[size] = {
            "body_bytes": runs[size]["syncbridge"][0]["body_bytes"],
            "syncbridge": sb, "webhook": wh,
            "ratio": {"rps": sb["rps_median"] / wh["rps_median"], "p99": sb["p99_ms_median"] / wh["p99_ms_median"],
                      "p50": sb["p50_ms_median"] / wh["p50_ms_median"],
                      "cpu_per_request": sb["server_cpu_ms_per_request_median"]
                      / wh["server_cpu_ms_per_request_median"],
                      "rps_sustained": sb["rps_sustained_median"] / wh["rps_sustained_median"],
                      "rps_per_round": [a["rps"] / b["rps"] for a, b in zip(runs[size]["syncbridge"],
                                                                              runs[size]["webhook"], strict=True)]},
            "light": {"connections": args.light_connections, **light_summary, **_light_ratios(light_summary)},
            "runs": runs[size], "light_runs": light[size],
        }
        per_size[size]["targets"] = {
            "rps_at_least_webhook": per_size[size]["ratio"]["rps"] >= 1.0,
            "p99_at_most_half_webhook": per_size[size]["ratio"]["p99"] <= 0.5,
            "zero_non_2xx": sb["non_2xx"] == 0 and sb["socket_errors"] == 0,
        }
    result = {
        "params": {"duration_s": args.duration, "connections": args.connections, "wrk_threads": args.wrk_threads,
                   "rounds": args.rounds, "web_workers": args.web_workers, "web_threads": args.web_threads,
                   "sizes": sizes},
        "sizes": per_size,
        # Every 2xx is a 202 (a new delivery: ids never repeated, so the benchmark measured the store path,
        # never the redelivery path's 200 or a cache) and a delivery key of its own, listing jobs that exist.
        # Keys may exceed the 2xx count by the requests still in flight when wrk stopped (stored, but their
        # answers not counted), never the requests wrk started.
        "storage": {"aof_enabled": bool(aof), "accepted_2xx": accepted, "accepted_202": created,
                    "delivery_keys": stored, "delivery_keys_with_existing_jobs": with_job,
                    "requests_started": sent,
                    "every_accepted_stored": created == accepted <= stored <= sent and with_job == stored},
        "web_rss_after_load_bytes": web_rss,
        "web_log_errors": [line for line in web_log.splitlines() if " ERROR " in line or "Traceback" in line][:20],
    }
    result["targets"] = {f"{size}: {name}": met for size in sizes for name, met in per_size[size]["targets"].items()}
    result["targets"]["every accepted delivery stored, each id once"] = result["storage"]["every_accepted_stored"]
    result["targets"]["web RSS <= 120 MiB after load"] = web_rss <= 120 * 1024 * 1024
    print_comparison(result)
    write_result("receiver", result)
    return result


def _light_ratios(light: dict[str, dict[str, Any]]) -> dict[str, float]:
    if not light:
        return {}
    sb, wh = light["syncbridge"], light["webhook"]
    return {"ratio_p99": sb["p99_ms_median"] / wh["p99_ms_median"],
            "ratio_p50": sb["p50_ms_median"] / wh["p50_ms_median"]}


def print_comparison(result: dict[str, Any]) -> None:
    print(f"\n{'':<10}{'':<12}{'bytes':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'CPU ms/req':>12}")
    for size, row in result["sizes"].items():
        for name in ("syncbridge", "webhook"):
            data = row[name]
            print(f"{size:<10}{name:<12}{row['body_bytes']:>7}{data['rps_median']:>9.0f}{data['p50_ms_median']:>9.2f}"
                  f"{data['p99_ms_median']:>9.2f}{data['non_2xx'] + data['socket_errors']:>9}"
                  f"{data['server_cpu_ms_per_request_median']:>12.3f}")
        ratio = row["ratio"]
        rounds = ", ".join(f"{value:.2f}" for value in ratio["rps_per_round"])
        print(f"{size:<10}{'ratio':<12}{'':>7}{ratio['rps']:>9.2f}{ratio['p50']:>9.2f}{ratio['p99']:>9.2f}{'':>9}"
              f"{ratio['cpu_per_request']:>12.2f}   (req/s ratio per round: {rounds})")
        light = row["light"]
        if "ratio_p99" in light:
            print(f"{'':<10}light load ({light['connections']} connections): p99 "
                  f"{light['syncbridge']['p99_ms_median']:.2f} vs {light['webhook']['p99_ms_median']:.2f} ms")
    storage = result["storage"]
    print(f"stored: {storage['delivery_keys']} delivery keys for {storage['accepted_2xx']} 2xx answers "
          f"({storage['accepted_202']} of them 202; {storage['requests_started']} requests started; "
          f"AOF {'on' if storage['aof_enabled'] else 'OFF'}); "
          f"all with existing jobs: {storage['delivery_keys_with_existing_jobs'] == storage['delivery_keys']}")
    print(f"web RSS after load, all processes: {result['web_rss_after_load_bytes'] / 1024 / 1024:.1f} MiB")
    for name, met in result["targets"].items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """syncbridge alone under each server variant in SWEEP, same load."""
    run_id = uuid.uuid4().hex[:8]
    rows = []
    with Stack("receiver-sweep", keep=args.keep) as stack:
        stack.write_config(mesa_config(f"http://{HOST}:9", [REPO]))
        headers, body = signed_push(f"acme/{REPO}")
        body_path = stack.dir / "body.json"
        body_path.write_bytes(body)
        signature = headers["X-Hub-Signature-256"]
        for number, (label, workers, threads, variant) in enumerate(SWEEP):
            base, web = stack.web(workers=workers, threads=threads, variant=variant)
            wait_http(f"{base}/readyz")
            pids = [web.pid, stack.redis_server.process.pid]
            wrk(f"{base}/hooks/github", body_path, signature, f"{run_id}-v{number}-warm", args.warmup,
                args.connections, args.wrk_threads, stack.dir)
            runs = [wrk(f"{base}/hooks/github", body_path, signature, f"{run_id}-v{number}-r{index}", args.duration,
                        args.connections, args.wrk_threads, stack.dir, pids) for index in range(args.sweep_rounds)]
            stack.stop(web)
            row = {"variant": label, "workers": workers, "threads": threads, "options": list(variant),
                   **summarize(runs)}
            rows.append(row)
            print(f"  {label:<34} {row['rps_median']:7.0f} req/s  p50 {row['p50_ms_median']:6.2f} ms  "
                  f"p99 {row['p99_ms_median']:7.2f} ms  non-2xx {row['non_2xx'] + row['socket_errors']}  "
                  f"CPU {row['server_cpu_ms_per_request_median']:.3f} ms/req")
    result = {"params": {"duration_s": args.duration, "connections": args.connections,
                         "wrk_threads": args.wrk_threads, "rounds": args.sweep_rounds}, "variants": rows}
    write_result("receiver_sweep", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk round (max 30)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load per server first")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (max 64)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server, interleaved")
    parser.add_argument("--light-rounds", type=int, default=1, help="rounds per server at --light-connections")
    parser.add_argument("--light-connections", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=1, help="syncbridge web --workers")
    parser.add_argument("--sizes", nargs="+", choices=payloads.SIZES, default=list(payloads.SIZES),
                        help="push bodies to send (bench.payloads)")
    parser.add_argument("--web-threads", type=int, default=None, help="syncbridge web --threads (default: its own)")
    parser.add_argument("--sweep", action="store_true", help="compare server variants (bench.serve)")
    parser.add_argument("--sweep-rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, AOF)")
    args = parser.parse_args()
    if not 0 < args.duration <= MAX_DURATION or not 0 < args.connections <= MAX_CONNECTIONS:
        parser.error(f"--duration must be in (0, {MAX_DURATION}] and --connections in (0, {MAX_CONNECTIONS}]")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    sweep(args) if args.sweep else compare(args)


if __name__ == "__main__":
    main()
