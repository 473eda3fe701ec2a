"""Print the latest results (bench/results/*.json) as the Markdown tables of docs/BENCHMARKS.md.

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import RESULTS


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def yes(met: bool) -> str:
    return "met" if met else "**not met**"


def receiver(data: dict[str, Any]) -> None:
    sb, wh, ratio, params = data["syncbridge"], data["webhook"], data["ratio"], data["params"]
    print(f"Receiver ({data['at']}, {params['rounds']} x {params['duration_s']:g} s rounds each, "
          f"{params['connections']} connections, medians):\n")
    print("| | req/s | sustained req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|")
    for name, row in (("syncbridge", sb), ("webhook", wh)):
        print(f"| {name} | {row['rps_median']:.0f} | {row['rps_sustained_median']:.0f} | {row['p50_ms_median']:.2f} | "
              f"{row['p99_ms_median']:.2f} | {row['non_2xx'] + row['socket_errors']} | "
              f"{row['server_cpu_ms_per_request_median']:.3f} |")
    print(f"| ratio | {ratio['rps']:.2f} | {ratio['rps_sustained']:.2f} | {ratio['p50']:.2f} | {ratio['p99']:.2f} | "
          f"| {ratio['cpu_per_request']:.2f} |")
    light = data.get("light", {})
    if "ratio_p99" in light:
        print(f"\nLight load ({light['connections']} connections): p50 {light['syncbridge']['p50_ms_median']:.2f} vs "
              f"{light['webhook']['p50_ms_median']:.2f} ms, p99 {light['syncbridge']['p99_ms_median']:.2f} vs "
              f"{light['webhook']['p99_ms_median']:.2f} ms (ratio {light['ratio_p99']:.2f}).")
    storage = data["storage"]
    print(f"\nStored: {storage['delivery_keys']} delivery keys for {storage['accepted_2xx']} accepted deliveries "
          f"(AOF {'on' if storage['aof_enabled'] else 'off'}).\n")


def sweep(data: dict[str, Any]) -> None:
    print(f"Server sweep ({data['at']}, {data['params']['rounds']} x {data['params']['duration_s']:g} s each):\n")
    print("| variant | req/s | p50 ms | p99 ms | CPU ms/req |")
    print("|---|---|---|---|---|")
    for row in data["variants"]:
        print(f"| {row['variant']} | {row['rps_median']:.0f} | {row['p50_ms_median']:.2f} | "
              f"{row['p99_ms_median']:.2f} | {row['server_cpu_ms_per_request_median']:.3f} |")
    print()


def main() -> None:
    if data := load("receiver"):
        receiver(data)
    if data := load("receiver_sweep"):
        sweep(data)
    rows = []
    if data := load("receiver"):
        targets = data["targets"]
        ratio = data["ratio"]
        rows += [("receiver req/s >= 1.0x webhook", f"{ratio['rps']:.2f}x", targets["rps_at_least_webhook"]),
                 ("receiver p99 <= 0.5x webhook's", f"{ratio['p99']:.2f}x", targets["p99_at_most_half_webhook"]),
                 ("0 non-2xx", str(data["syncbridge"]["non_2xx"] + data["syncbridge"]["socket_errors"]),
                  targets["zero_non_2xx"]),
                 ("every accepted delivery stored", f"{data['storage']['delivery_keys']} >= "
                  f"{data['storage']['accepted_2xx']}", targets["every_accepted_stored"])]
    if data := load("latency"):
        lat = data["push_to_call_ms"]
        rows.append(("push -> provider call p50 <= 30 ms", f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms",
                     data["targets"]["p50_at_most_30ms"]))
    if data := load("coalesce"):
        rows.append(("1,000 pushes in 10 s: <= 2 syncs per target",
                     f"max {data['max_syncs_per_target']} ({data['provider_syncs']} syncs, {data['jobs']} jobs)",
                     data["targets"]["at_most_2_syncs_per_target"]))
    if data := load("inflight"):
        rows.append(("1,000 operations in flight never hold a worker each",
                     f"{data['wall_s']:.1f} s for {data['params']['operations']} x {data['params']['op_seconds']:g} s "
                     f"on {data['params']['processes']} processes", data["targets"]["operations_never_hold_a_worker"]))
    print("| target | measured | |\n|---|---|---|")
    for name, measured, met in rows:
        print(f"| {name} | {measured} | {yes(met)} |")
    if data := load("memory"):
        red, mib = data["redis"], data["rss_mib_total"]
        print(f"\nMemory: web RSS {mib['web_idle']:.0f} MiB idle, {mib['web_after_load']:.0f} MiB after load; "
              f"worker RSS {mib['worker_after_jobs']:.0f} MiB; "
              f"Redis {red['bytes_per_queued_job']:.0f} B per queued job, "
              f"{red['bytes_per_retained_completed_job']:.0f} B per completed job (first hour), "
              f"{red['bytes_per_job_after_rq_ttls']:.0f} B per job after RQ's TTLs.")


if __name__ == "__main__":
    main()
