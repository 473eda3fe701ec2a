"""What every benchmark shares: processes on 127.0.0.1, configs, signed pushes, machine facts, results.

Everything listens on and talks to 127.0.0.1 only. Each benchmark builds a :class:`Stack` (an
embedded Redis with AOF on, plus whatever child processes it starts) in a temporary directory
and stops every process it started when it ends, even on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from bench import payloads
from bridge.embedded import EmbeddedRedis, free_port, redis_server_binary

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
SECRET = "bench-webhook-secret"
SANDBOX_TOKEN = "sandbox-token"
ORG = "acme"


# --- payloads and configs ----------------------------------------------------------------------


def signed_push(repo: str, ref: str = "refs/heads/main", delivery: str | None = None,
                size: str = "typical") -> tuple[dict[str, str], bytes]:
    """Headers and raw body of a GitHub push to ``repo`` (bench.payloads, ``size`` one of its SIZES),
    signed with :data:`SECRET` (X-Hub-Signature-256), as GitHub sends them."""
    raw = payloads.body(repo, size, ref)
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery or os.urandom(16).hex(),
               "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/syncbridge-bench",
               "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()}
    return headers, raw


def mesa_config(base_url: str, repos: Sequence[str], retention: str | None = None) -> dict[str, Any]:
    """A GitHub source; per repo ``acme/<repo>`` one route to its own Mesa target ``mesa-<repo>``."""
    config: dict[str, Any] = {
        "sources": {"github": {"kind": "github", "secret": SECRET}},
        "targets": {f"mesa-{repo}": {"provider": "mesa", "base_url": f"{base_url}/mesa/v1", "org": ORG,
                                     "repo": repo, "token": SANDBOX_TOKEN} for repo in repos},
        "routes": [{"source": "github", "repo": f"{ORG}/{repo}", "targets": [f"mesa-{repo}"]} for repo in repos],
    }
    if retention:
        config["retention"] = retention
    return config


# --- processes ----------------------------------------------------------------------------------


def wait_http(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 2xx (or raise, also when ``process`` has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


class Stack:
    """A temporary directory, an embedded Redis (AOF on) and the child processes of one benchmark."""

    def __init__(self, name: str, keep: bool = False):
        self.name = name
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"syncbridge-bench-{name}-"))
        self.redis_server = EmbeddedRedis(self.dir / "redis")
        self.children: list[subprocess.Popen[bytes]] = []
        self.config_path = self.dir / "syncbridge.yml"

    def __enter__(self) -> Stack:
        # SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C, so every child is stopped, none orphaned.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.redis_server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self.redis_server.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"kept {self.dir}", file=sys.stderr)

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    def write_config(self, config: dict[str, Any]) -> Path:
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a syncbridge process using this stack's Redis and config."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCBRIDGE_", "REDIS_"))}
        env.update(REDIS_URL=self.redis_url, SYNCBRIDGE_CONFIG=str(self.config_path), PYTHONPATH=str(ROOT), **extra)
        return env

    def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child process whose output goes to ``<dir>/<name>.log``."""
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(list(args), env=env or self.env(), stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
        log.close()
        self.children.append(process)
        return process

    def web(self, port: int | None = None, workers: int | None = None, threads: int | None = None,
            variant: Sequence[str] = (), env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen[bytes]]:
        """``syncbridge web`` as in production (``workers``/``threads`` None: its defaults); a ``variant``
        (bench.serve's options: another setting or a floor app) runs bench.serve instead; ``env`` adds
        variables to its environment."""
        port = port or free_port()
        common = ["--port", str(port), *(["--workers", str(workers)] if workers else []),
                  *(["--threads", str(threads)] if threads else [])]
        if variant:
            args = [sys.executable, "-m", "bench.serve", *common, *variant]
        else:
            args = [str(BIN / "syncbridge"), "web", "--host", HOST, *common]
        process = self.spawn(f"web-{port}", args, self.env(**(env or {})))
        url = f"http://{HOST}:{port}"
        wait_http(f"{url}/readyz", process=process)
        return url, process

    def worker(self, processes: int | None = None, index: int = 0) -> subprocess.Popen[bytes]:
        """``syncbridge worker``; ``processes`` passes ``--processes`` (None: the command's default)."""
        extra = ["--processes", str(processes)] if processes is not None else []
        return self.spawn(f"worker-{index}", [str(BIN / "syncbridge"), "worker", *extra])

    def sandbox(self) -> tuple[str, subprocess.Popen[bytes]]:
        """The provider sandbox (``syncbridge sandbox``) on a free loopback port."""
        if not (ROOT / "sandbox" / "server.py").exists():
            raise SystemExit("the provider sandbox (sandbox/server.py) is not there yet: this benchmark needs it")
        port = free_port()
        process = self.spawn("sandbox", [str(BIN / "syncbridge"), "sandbox", "--host", HOST, "--port", str(port)])
        url = f"http://{HOST}:{port}"
        wait_http(f"{url}/_sandbox/calls", process=process)
        return url, process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM one of our children, then SIGKILL if it lingers."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def rss_bytes(pid: int, children: bool = True, unique: bool = False) -> dict[str, int]:
    """Resident set size of a process and (optionally) each of its children, by pid.

    ``unique`` gives USS instead (memory only that process holds): forked workers share pages
    with their parent, so summing RSS over a process tree counts the shared pages several times.
    """
    process = psutil.Process(pid)
    members = [process, *(process.children(recursive=True) if children else [])]
    out = {}
    for member in members:
        try:
            out[f"{member.name()}:{member.pid}"] = member.memory_full_info().uss if unique else member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return out


# --- numbers ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _run(args: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (result.stdout + result.stderr).strip().splitlines()[0] if (result.stdout + result.stderr).strip() else ""


def machine() -> dict[str, Any]:
    """The facts docs/BENCHMARKS.md reports next to every number."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    redis_version = re.search(r"v=(\S+)", _run([redis_server_binary(), "--version"]))
    import granian
    import rq

    return {
        "nproc": os.cpu_count(),
        "cpu": model.group(1) if model else platform.processor(),
        "memory_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_version.group(1) if redis_version else "unknown",
        "granian": granian.__version__,
        "rq": rq.__version__,
        "webhook": _run(["webhook", "-version"]).removeprefix("webhook version "),
        "wrk": _run(["wrk", "-v"]).split(" [")[0],
        "git": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "bridge", "workers"])),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (the latest run) and append it to ``history.jsonl``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    with open(RESULTS / "history.jsonl", "a") as history:
        history.write(json.dumps(record) + "\n")
    print(f"result: {path.relative_to(ROOT)}")
    return path


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system) used so far by these processes, their live children and reaped children."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            members = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in members:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return os.getloadavg()


# --- the provider sandbox and the worker ------------------------------------------------------------


def sandbox_calls(sandbox_url: str, provider: str = "mesa") -> list[dict[str, Any]]:
    """The sandbox's call log for ``provider`` (each call with ``method``, ``path``, ``at``)."""
    response = requests.get(f"{sandbox_url}/_sandbox/calls", params={"provider": provider}, timeout=30)
    response.raise_for_status()
    return response.json()["calls"]


def sandbox_settings(sandbox_url: str, provider: str = "mesa", **settings: Any) -> None:
    """``PUT /_sandbox/settings/<provider>``: e.g. ``seconds=30`` makes each operation take 30 s."""
    requests.put(f"{sandbox_url}/_sandbox/settings/{provider}", json=settings, timeout=10).raise_for_status()


def wait_workers(redis: Any, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` RQ workers have registered (they are then blocked on the queue)."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=redis)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} RQ workers registered within {timeout:.0f}s")
        time.sleep(0.1)


def job_statuses(redis: Any, job_ids: Sequence[str]) -> dict[str, str]:
    """``status`` of each job record (one pipelined round trip)."""
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(f"syncbridge:job:{job_id}", "status")
    return {job_id: (status or b"missing").decode() for job_id, status in zip(job_ids, pipe.execute(), strict=True)}


def wait_terminal(redis: Any, job_ids: Sequence[str], timeout: float) -> tuple[float, dict[str, int]]:
    """Wait until every job is completed or failed; returns when (time.time()) and the status counts."""
    deadline = time.monotonic() + timeout
    pending = list(job_ids)
    while True:
        statuses = job_statuses(redis, pending)
        pending = [job_id for job_id, status in statuses.items() if status not in ("completed", "failed")]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    finished = time.time()
    counts: dict[str, int] = {}
    for status in job_statuses(redis, job_ids).values():
        counts[status] = counts.get(status, 0) + 1
    return finished, counts
