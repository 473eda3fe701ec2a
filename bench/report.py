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
    params = data["params"]
    print(f"Receiver ({data['at']}, {params['rounds']} x {params['duration_s']:g} s rounds per size and server, "
          f"interleaved, {params['connections']} connections, medians):\n")
    print("| push | bytes | server | req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req | p99 at 2 connections |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, row in data["sizes"].items():
        for name in ("syncbridge", "webhook"):
            data_row, light = row[name], row["light"].get(name)
            light_p99 = f"{light['p99_ms_median']:.2f}" if light else ""
            print(f"| {size} | {row['body_bytes']} | {name} | {data_row['rps_median']:.0f} | "
                  f"{data_row['p50_ms_median']:.2f} | {data_row['p99_ms_median']:.2f} | "
                  f"{data_row['non_2xx'] + data_row['socket_errors']} | "
                  f"{data_row['server_cpu_ms_per_request_median']:.3f} | {light_p99} |")
        ratio = row["ratio"]
        light_ratio = f"{row['light']['ratio_p99']:.2f}" if "ratio_p99" in row["light"] else ""
        print(f"| {size} | | **ratio** | **{ratio['rps']:.2f}** | {ratio['p50']:.2f} | **{ratio['p99']:.2f}** | | "
              f"{ratio['cpu_per_request']:.2f} | {light_ratio} |")
    storage = data["storage"]
    print(f"\nStored: {storage['delivery_keys']} delivery keys for {storage['accepted_2xx']} 2xx answers, "
          f"{storage['accepted_202']} of them 202 (AOF {'on' if storage['aof_enabled'] else 'off'}); web RSS after "
          f"load {data['web_rss_after_load_bytes'] / 1024 / 1024:.1f} MiB.\n")


def slow_clients(data: dict[str, Any]) -> None:
    slow = data["params"]["slow"]
    print(f"Slow clients ({data['at']}): signed pushes one after another, alone and with {slow} connections "
          "trickling bodies at 1 byte/s:\n")
    print("| server | alone p50 / p99 ms | with slow clients p50 / p99 / max ms | statuses | /healthz p99 ms |")
    print("|---|---|---|---|---|")
    for name in ("syncbridge", "webhook"):
        alone, loaded = data[name]["without_slow_clients"], data[name]["with_slow_clients"]
        health = f"{loaded['healthz_ms']['p99']:.2f}" if "healthz_ms" in loaded else "(no such route)"
        print(f"| {name} | {alone['push_ms']['p50']:.2f} / {alone['push_ms']['p99']:.2f} | "
              f"{loaded['push_ms']['p50']:.2f} / {loaded['push_ms']['p99']:.2f} / {loaded['push_ms']['max']:.2f} | "
              f"{loaded['statuses']} | {health} |")
    print()


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
    if data := load("slow_clients"):
        slow_clients(data)
    rows = []
    if data := load("receiver"):
        rows += [(name, "", met) for name, met in data["targets"].items()]
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
    if data := load("recovery"):
        both = data["both_completed_s"]
        rows.append(("a killed worker's sync and its follow-up done <= 30 s after a new worker starts",
                     f"median {both['median']:.1f} s, max {both['max']:.1f} s over {len(data['rounds'])} kills",
                     data["within_bound"] == len(data["rounds"])))
    if data := load("memory"):
        rows.append(("worker RSS (all its processes) <= 160 MiB",
                     f"{data['rss_mib_total']['worker_after_jobs']:.0f} MiB after {data['params']['jobs']} jobs",
                     data["rss_mib_total"]["worker_after_jobs"] <= 160))
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
    if data := load("replicas"):
        cost = data["wait_cost_ms"]
        print(f"SYNCBRIDGE_REDIS_REPLICAS=1 (WAIT 1) adds p50 {cost['p50']:+.2f} ms, p99 {cost['p99']:+.2f} ms "
              f"to a push's answer ({data['params']['clients']} clients, loopback replica).")


if __name__ == "__main__":
    main()
