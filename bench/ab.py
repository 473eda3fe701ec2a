"""A/B of the receiver: two ``syncbridge web`` servers on one Redis, B with extra packages on its path.

For trying a dependency change without touching the environment, e.g. hiredis (redis-py's C
protocol packer and parser):

    .venv/bin/pip install --target /tmp/hiredis-pkg hiredis
    .venv/bin/python -m bench.ab --b-path /tmp/hiredis-pkg

Rounds alternate A and B (first server swapped every round); medians of req/s, p99 and server
CPU per request are printed and written to bench/results/ab.json. Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from bench.common import BIN, HOST, Stack, free_port, mesa_config, signed_push, wait_http, write_result
from bench.receiver import REPO, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--b-path", required=True, help="directory put first on B's PYTHONPATH")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8, help="seconds per round (max 30)")
    parser.add_argument("--connections", type=int, default=32, help="max 64")
    args = parser.parse_args()
    if not 0 < args.duration <= 30 or not 0 < args.connections <= 64 or not 0 < args.rounds <= 10:
        parser.error("--duration in (0, 30], --connections in (0, 64], --rounds in (0, 10]")
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    with Stack("ab") as stack:
        stack.write_config(mesa_config(f"http://{HOST}:9", [REPO]))
        servers = {}
        for name, extra in (("A", ""), ("B", args.b_path + ":")):
            port = free_port()
            env = stack.env()
            env["PYTHONPATH"] = extra + env["PYTHONPATH"]
            process = stack.spawn(f"web-{name}", [str(BIN / "syncbridge"), "web", "--host", HOST, "--port", str(port)],
                                  env=env)
            wait_http(f"http://{HOST}:{port}/readyz", process=process)
            servers[name] = (f"http://{HOST}:{port}/hooks/github", [process.pid, stack.redis_server.process.pid])
        headers, body = signed_push(f"acme/{REPO}")
        body_path = stack.dir / "body.json"
        body_path.write_bytes(body)
        for index in range(args.rounds):
            for name in ("A", "B") if index % 2 == 0 else ("B", "A"):
                url, pids = servers[name]
                run = wrk(url, body_path, headers["X-Hub-Signature-256"], f"ab-{name}-{index}", args.duration,
                          args.connections, 2, stack.dir, pids)
                runs[name].append(run)
                print(f"  {name} r{index + 1}: {run['rps']:7.0f} req/s  p99 {run['p99_ms']:6.1f} ms  "
                      f"CPU {run['server_cpu_ms_per_request']:.3f} ms/req")
    summary = {name: {"rps": statistics.median(run["rps"] for run in rows),
                      "p99_ms": statistics.median(run["p99_ms"] for run in rows),
                      "cpu_ms_per_request": statistics.median(run["server_cpu_ms_per_request"] for run in rows)}
               for name, rows in runs.items()}
    for name, row in summary.items():
        print(f"{name}: {row['rps']:.0f} req/s, p99 {row['p99_ms']:.1f} ms, {row['cpu_ms_per_request']:.3f} ms CPU/req")
    print(f"B/A: req/s {summary['B']['rps'] / summary['A']['rps']:.2f}, "
          f"CPU/req {summary['B']['cpu_ms_per_request'] / summary['A']['cpu_ms_per_request']:.2f}")
    write_result("ab", {"params": vars(args), "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
