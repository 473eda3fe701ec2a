#!/usr/bin/env bash
# Every syncbridge benchmark, one after the other (about 10 minutes on 2 cores); each prints its
# numbers and writes bench/results/<name>.json (and appends to bench/results/history.jsonl).
# Loopback only. Usage: bench/run_all.sh [name ...]   names: receiver slow sweep profile latency coalesce inflight memory
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || { echo "no $PY: run 'make install' first" >&2; exit 1; }
for tool in wrk webhook; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y wrk webhook" >&2; exit 1; }
done
"$PY" -c 'import psutil' 2>/dev/null && [[ -x "$(dirname "$PY")/py-spy" ]] || "$PY" -m pip install --quiet -r bench/requirements.txt

all=(receiver slow sweep profile latency coalesce inflight memory)
if [[ $# -gt 0 ]]; then selected=("$@"); else selected=("${all[@]}"); fi
for name in "${selected[@]}"; do
  echo "=== $name ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case "$name" in
    receiver) "$PY" -m bench.receiver ;;
    slow)     "$PY" -m bench.slow_clients ;;
    sweep)    "$PY" -m bench.receiver --sweep ;;
    profile)  "$PY" -m bench.profile_receiver ;;
    latency)  "$PY" -m bench.latency ;;
    coalesce) "$PY" -m bench.coalesce ;;
    inflight) "$PY" -m bench.inflight ;;
    memory)   "$PY" -m bench.memory ;;
    *) echo "unknown benchmark $name (one of: ${all[*]})" >&2; exit 2 ;;
  esac
done
echo "=== summary (bench/results/*.json)"
"$PY" -m bench.report
