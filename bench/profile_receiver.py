"""Where the receiver's time goes: py-spy on the web processes under wrk, and Redis round trips.

1. ``syncbridge web`` (production options) on an embedded Redis with AOF on; wrk sends signed
   pushes with distinct delivery ids for ``--duration`` seconds while ``py-spy record`` samples
   every granian process (``--subprocesses``), counting only the thread that holds the GIL
   (``--gil``: where CPU goes, not where threads wait). The folded stacks are
   kept in ``bench/results/profile/receiver.folded`` (feed them to any flame graph tool) and
   summarised by the frames syncbridge cares about: inclusive share of the samples.
2. Round trips: ``--pushes`` sequential pushes under Redis ``MONITOR``; every command a client
   sent (not those a Lua script ran) is counted per push.

    .venv/bin/python -m bench.profile_receiver

Loopback only; py-spy needs ptrace rights (root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench import payloads
from bench.common import BIN, HOST, RESULTS, Stack, mesa_config, signed_push, write_result
from bench.receiver import REPO, wrk

# Frames to account for, as (label, regex on "function (file)" of py-spy's folded output).
FRAMES = [
    ("granian: the RSGI callback (the loop's share)", r"future_watcher \(granian/_futures\.py"),
    ("edge: Receiver.__rsgi__ (all of a request)", r"__rsgi__ \(bridge/receiver\.py"),
    ("  read the body (deadline, limits)", r"_read \(bridge/receiver\.py"),
    ("  verify signature", r"verify \(bridge/sources/github\.py"),
    ("  parse payload", r"parse \(bridge/sources/github\.py"),
    ("  route_push", r"route_push \(bridge/routing\.py"),
    ("  Enqueuer.prepare (the script's arguments)", r"prepare \(bridge/queueing\.py"),
    ("  Hooks.answer (the answer, the log line)", r"answer \(bridge/hooks\.py"),
    ("  send the answer (orjson, granian)", r"_respond \(bridge/receiver\.py"),
    ("group commit: a batch's round trip", r"_flush_pending \(bridge/group_commit\.py"),
    ("  Enqueuer.pack (one script call's arguments)", r"pack \(bridge/queueing\.py"),
    ("  redis-py asyncio: send, parse", r"\(redis/asyncio/connection\.py|\(redis/_parsers/"),
    ("metrics", r"\(bridge/metrics\.py"),
    ("logging (the record; writing is the writer thread's)", r"(info|warning|log|debug) \(logging/__init__\.py"),
    ("logging writer thread", r"_monitor \(logging/handlers\.py"),
]


def fold_summary(folded: Path) -> tuple[int, list[dict[str, Any]], list[tuple[str, int]]]:
    """Total samples, inclusive samples per FRAMES entry, and the top self-time leaf frames."""
    total = 0
    inclusive = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    patterns = [(label, re.compile(pattern)) for label, pattern in FRAMES]
    for line in folded.read_text().split("\n"):
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for label, pattern in patterns:
            if any(pattern.search(frame) for frame in frames):
                inclusive[label] += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    rows = [{"frame": label, "samples": inclusive[label], "share": inclusive[label] / total if total else 0.0}
            for label, _ in FRAMES]
    return total, rows, leaves.most_common(15)


def profile(stack: Stack, base: str, master_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """py-spy over granian's main process and workers while wrk runs."""
    out_dir = RESULTS / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    folded = out_dir / "receiver.folded"
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    spy = subprocess.Popen([py_spy, "record", "--pid", str(master_pid), "--subprocesses", "--format", "raw",
                            "--rate", str(args.rate), "--duration", str(int(args.duration) + 1), "--gil",
                            "--output", str(folded), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    redis = Redis.from_url(stack.redis_url)
    calls_before = _script_calls(redis)
    headers, body = signed_push(f"acme/{REPO}", size=args.size)
    body_path = stack.dir / "body.json"
    body_path.write_bytes(body)
    load = wrk(f"{base}/hooks/github", body_path, headers["X-Hub-Signature-256"], f"prof-{uuid.uuid4().hex[:6]}",
               args.duration, args.connections, 2, stack.dir)
    script_calls = _script_calls(redis) - calls_before
    _, err = spy.communicate(timeout=args.duration + 60)
    if spy.returncode != 0 or not folded.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    total, rows, leaves = fold_summary(folded)
    print(f"\nwrk during the profile: {load['rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms"
          f"\npy-spy: {total} samples of GIL-holding threads ({folded.relative_to(RESULTS.parent.parent)})")
    for row in rows:
        print(f"  {row['share']:6.1%}  {row['frame']}")
    per_call = load["ok"] / script_calls if script_calls else 0.0
    print(f"group commit under this load: {load['ok']} deliveries stored by {script_calls} script calls "
          f"({per_call:.1f} deliveries per Redis round trip)")
    print("top self time:")
    for frame, count in leaves:
        print(f"  {count / total:6.1%}  {frame}")
    return {"load": {key: load[key] for key in ("rps", "p50_ms", "p99_ms", "non_2xx")}, "samples": total,
            "group_commit": {"deliveries": load["ok"], "script_calls": script_calls, "deliveries_per_call": per_call},
            "inclusive": rows, "top_self": [{"frame": frame, "share": count / total} for frame, count in leaves]}


def _script_calls(redis: Redis) -> int:
    return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def round_trips(stack: Stack, base: str, pushes: int) -> dict[str, Any]:
    """Client commands Redis receives per push (MONITOR), excluding the commands inside the Lua script."""
    monitor_client = Redis.from_url(stack.redis_url)
    lines: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                lines.append(f"{event['client_address']} {event['command']}")
                if stop.is_set() and "bench-monitor-end" in event["command"]:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    # One push first, outside the count: the first call of a registered script loads it (NOSCRIPT).
    session = requests.Session()
    headers, body = signed_push(f"acme/{REPO}")
    session.post(f"{base}/hooks/github", data=body, headers={**headers, "X-GitHub-Delivery": "warm"}, timeout=10)
    time.sleep(0.5)
    start = len(lines)
    for index in range(pushes):
        answer = session.post(f"{base}/hooks/github", data=body,
                              headers={**headers, "X-GitHub-Delivery": f"rt-{index}"}, timeout=10)
        answer.raise_for_status()
    time.sleep(0.5)
    stop.set()
    Redis.from_url(stack.redis_url).echo("bench-monitor-end")
    thread.join(10)
    window = [line for line in lines[start:] if "bench-monitor-end" not in line]
    client = [line for line in window if not line.startswith("lua")]
    commands = collections.Counter(line.split(" ", 1)[1].split(" ", 1)[0].strip("'\"").upper() for line in client)
    in_script = collections.Counter(line.split(" ", 1)[1].split(" ", 1)[0].strip("'\"").upper()
                                    for line in window if line.startswith("lua"))
    result = {"pushes": pushes, "client_commands": len(client), "per_push": len(client) / pushes,
              "by_command": dict(commands), "script_commands_per_push": sum(in_script.values()) / pushes,
              "script_by_command": dict(in_script)}
    print(f"\nround trips: {result['per_push']:.2f} client commands per push {dict(commands)}; "
          f"{result['script_commands_per_push']:.1f} commands inside the script per push")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds of load while sampling (max 30)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (max 64)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--pushes", type=int, default=20, help="sequential pushes under MONITOR")
    parser.add_argument("--size", choices=payloads.SIZES, default="typical", help="push body (bench.payloads)")
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--web-threads", type=int, default=None, help="default: syncbridge web's")
    args = parser.parse_args()
    if not 0 < args.duration <= 30 or not 0 < args.connections <= 64:
        parser.error("--duration must be in (0, 30] and --connections in (0, 64]")
    with Stack("profile") as stack:
        stack.write_config(mesa_config(f"http://{HOST}:9", [REPO]))
        base, web = stack.web(workers=args.web_workers, threads=args.web_threads)
        trips = round_trips(stack, base, args.pushes)
        sampled = profile(stack, base, web.pid, args)
    write_result("profile_receiver", {"params": vars(args), "round_trips": trips, "profile": sampled})


if __name__ == "__main__":
    main()
