"""``syncbridge send-test``: a correctly signed sample push to a running bridge, then its jobs.

It signs with the source's own secret from the config, so a 202 proves the whole path (the
receiver, the routes, the queue); it then follows each job's status route until it ends.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import requests

from bridge import config as config_module
from bridge.commands import json_option
from bridge.commands.jobs import answer_json, bridge_url_option, call, refusal
from bridge.commands.run import demo_mode
from bridge.config import ConfigError
from bridge.globs import compile_glob
from bridge.samples import signed_push, signing_secret
from bridge.store import epoch

TERMINAL = ("completed", "failed")


@click.command("send-test")
@click.option("--source", "source_name", help="the source (key under `sources:`) to sign for; default: the only one")
@click.option("--repo", help="repository full name (default: the first route's repo for this source)")
@click.option("--ref", default="refs/heads/main", show_default=True, help="the full ref the sample push moves")
@bridge_url_option
@click.option("--wait", "wait_seconds", type=float, default=60, show_default=True,
              help="seconds to follow the jobs (0: don't)")
@json_option
def send_test(source_name: str | None, repo: str | None, ref: str, url: str, wait_seconds: float,
              as_json: bool) -> None:
    """Send a correctly signed sample push and print the jobs and their final status.

    With --json, one JSON object at the end: the push's status and answer, and each job as it ended
    (or as it was when --wait ran out). The exit status is 0 only when every job completed.
    """
    try:
        config = config_module.load(config_module.DEMO_PATH if demo_mode() else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    source_name = source_name or _only_source(config)
    source = config.sources.get(source_name)
    if source is None:
        raise click.ClickException(f"no source {source_name!r} in {config.path}"
                                   f" (sources: {', '.join(config.sources)})")
    repo = repo or _default_repo(config, source_name)
    after = secrets.token_hex(20)
    headers, raw = signed_push(source.kind, repo, ref, "0" * 40, after,
                               signing_secret(source.kind, source.secret_list()))
    endpoint = f"{url.rstrip('/')}/hooks/{source_name}"
    try:
        response = requests.post(endpoint, data=raw, headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {endpoint}: {exc}") from None
    answer = answer_json(response)
    say = _quiet if as_json else click.echo
    say(f"POST {endpoint} ({source.kind}: {repo} {ref} {after[:7]}) -> {response.status_code}")
    say(json.dumps(answer, indent=2) if answer else response.text.strip())
    final: dict[str, dict[str, Any]] = {}
    if response.status_code == 202 and wait_seconds > 0:
        final = _follow(answer["jobs"], wait_seconds, say)
    if as_json:
        click.echo(json.dumps({"url": endpoint, "status": response.status_code, "answer": answer or response.text,
                               "jobs": [final.get(job["id"], job) for job in answer.get("jobs", [])]}, indent=2))
    if response.status_code != 202 or (wait_seconds > 0 and not _all_completed(answer["jobs"], final)):
        sys.exit(1)


def _quiet(text: str) -> None:
    """With --json, the progress lines are not printed: the one JSON object is."""


def _all_completed(jobs: list[dict[str, Any]], final: dict[str, dict[str, Any]]) -> bool:
    return len(final) == len(jobs) and all(job["status"] == "completed" for job in final.values())


def _only_source(config: config_module.Config) -> str:
    if len(config.sources) == 1:
        return next(iter(config.sources))
    raise click.ClickException(f"{config.path} has {len(config.sources)} sources: choose one with --source"
                               f" ({', '.join(config.sources) or 'none'})")


def _job(url: str) -> dict[str, Any]:
    """One job's record from its status route; a refusal is said in words, not as a KeyError."""
    response = call("GET", url)
    if response.status_code == 200:
        return response.json()
    if response.status_code == 401:
        raise click.ClickException(
            f"the bridge took the push, but its job routes need its API token: export SYNCBRIDGE_API_TOKEN=<the "
            f"bridge's token> and run again (GET {url}: {refusal(response)})")
    raise click.ClickException(f"GET {url}: {refusal(response)}")


def _follow(jobs: list[dict[str, Any]], wait_seconds: float, say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Say each job's status as it changes; the jobs that ended, by id."""
    last: dict[str, str] = {}
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_seconds
    while len(final) < len(jobs) and time.monotonic() < deadline:
        for summary in jobs:
            if summary["id"] in final:
                continue
            job = _job(summary["url"])
            remote = job.get("remote") or {}
            line = f"{job['status']}" + (f" (provider: {remote.get('status')})" if remote.get("status") else "")
            if last.get(job["id"]) != line:
                last[job["id"]] = line
                say(f"  {job['target']:<20} {line}")
            if job["status"] in TERMINAL:
                final[job["id"]] = job
        time.sleep(0.25)
    if final:
        outcomes = [job["status"] for job in final.values()]
        say(f"done: {outcomes.count('completed')} completed, {outcomes.count('failed')} failed")
    for summary in jobs:
        job = final.get(summary["id"])
        if job is not None:
            remote = (job.get("remote") or {}).get("status")
            mirror = f" {job['mirror']}" if job.get("mirror") else ""  # a templated target's, named after the repo
            say(f"  {job['target']:<20} {job['status']:<9} in {_seconds(job)}  ({job['provider']}{mirror}: "
                f"{remote})  {summary['url']}" + (f"\n    error: {job['error']}" if job.get("error") else ""))
    if len(final) < len(jobs):
        say(f"still running after {wait_seconds:.0f}s; follow with `syncbridge jobs ID`")
    return final


def _seconds(job: dict[str, Any]) -> str:
    start, end = job.get("started_at") or job["created_at"], job["finished_at"]
    return f"{epoch(end) - epoch(start):.1f} s"


def _default_repo(config: config_module.Config, source: str) -> str:
    """The first route's repo for the source when it is a plain name (no glob characters)."""
    for route in config.routes:
        if route.source == source and compile_glob(route.repo).pattern.replace("\\", "") == route.repo:
            return route.repo
    return "acme/widgets"
