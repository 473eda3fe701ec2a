"""The worker side's subcommands: ``syncbridge worker``, ``syncbridge check`` and ``syncbridge sweep``.

Each imports what it uses when it runs: ``syncbridge worker``'s process only supervises the
worker processes it forks, and every page it holds is counted again in each of them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bridge.commands import json_option
from bridge.logs import configure

if TYPE_CHECKING:
    from bridge.config import Config


@click.command()
@click.option("--burst", is_flag=True, help="exit once the queue is empty")
@click.option("--processes", type=click.IntRange(1, 64), default=lambda: int(os.environ.get(
    "SYNCBRIDGE_WORKER_PROCESSES", 2)), show_default="$SYNCBRIDGE_WORKER_PROCESSES or 2",
    help="worker processes (a slow provider then cannot hold up the others)")
@click.option("--check", "health_check", is_flag=True,
              help="only check: exit 0 if a worker on this host is alive and heartbeating (a health check)")
def worker(burst: bool, processes: int, health_check: bool) -> None:
    """Run RQ workers with their scheduler: trigger syncs and follow them to their end."""
    if health_check:
        _check_worker()
        return
    _check_config_apart()
    configure()
    from workers.worker import run

    run(burst=burst, processes=processes)


def _check_config_apart() -> None:
    """Exit 1, saying why, on a config that cannot be used: before any job is taken.

    The config is loaded in a forked child, so this process, which forks every worker process,
    never holds the config's libraries (pydantic, PyYAML): each worker loads its own copy anyway.
    """
    child = os.fork()
    if child == 0:  # the child reports and exits, whatever happens: it must never go on to run workers
        status = 0
        try:
            from bridge import config as config_module

            config_module.load()
        except Exception as exc:  # a ConfigError names the file, the key and the reason
            status = 1
            click.echo(f"Error: {exc}", err=True)
            sys.stderr.flush()
        os._exit(status)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(1)


def _check_worker() -> None:
    """Say whether this host's worker lives, from RQ's own registry; exit 1 if not (or Redis is down)."""
    import socket

    from redis.exceptions import RedisError

    from bridge.connection import NoRedis, address, connect, problem
    from workers.worker import ALIVE_WITHIN, live_workers

    try:
        redis = connect()
        workers = live_workers(redis)
    except NoRedis as exc:
        raise click.ClickException(str(exc)) from None
    except RedisError as exc:
        raise click.ClickException(f"redis at {address(redis)}: {problem(exc)}") from None
    if not workers:
        raise click.ClickException(f"no worker on {socket.gethostname()} has sent a heartbeat in the last"
                                   f" {ALIVE_WITHIN} s")
    click.echo(f"{len(workers)} worker processes alive on {socket.gethostname()}")


@click.command()
@click.option("--online", is_flag=True, help="also make one harmless authenticated call to each target")
@click.option("--repo", metavar="OWNER/NAME", help="with --online: the repository a templated target is checked "
              "for (its mirror named after it)")
@json_option
def check(online: bool, repo: str | None, as_json: bool) -> None:
    """Validate the config (file, key and reason for each problem); exit 1 if it is unusable."""
    from bridge import config as config_module
    from bridge.config import ConfigError

    if repo is not None and ("/" not in repo or not online):
        raise click.UsageError("--repo takes a full name (owner/name) and goes with --online")
    report: dict[str, Any] = {"ok": True, "config": None, "problems": []}
    try:
        config = config_module.load()
    except ConfigError as exc:
        if not as_json:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(1)
        _finish(report | {"ok": False, "problems": exc.problems})
    report.update(config=config.path, sources=len(config.sources), targets=len(config.targets),
                  routes=len(config.routes))
    if not as_json:
        click.echo(f"{config.path}: OK: {len(config.sources)} sources, {len(config.targets)} targets, "
                   f"{len(config.routes)} routes")
    if online:
        report["online"] = _check_online(config, repo, say=_quiet if as_json else click.echo)
        report["ok"] = all(target["ok"] is not False for target in report["online"].values())
    if as_json:
        _finish(report)
    if not report["ok"]:
        sys.exit(1)


def _finish(report: dict[str, Any]) -> NoReturn:
    """Print ``--json``'s one object and exit 0 if all was well, else 1."""
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


def _quiet(text: str) -> None:
    """With --json, the lines are not printed: the one JSON object is."""


def _check_online(config: Config, repo: str | None,
                  say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """One harmless read per target; a templated one only for ``repo`` (without it: said, not failed).

    Per target: ``ok`` (True, False, or None when skipped), the ``mirror`` checked, and the ``error``.
    """
    from bridge import mirrors, redact
    from workers.providers import PROVIDERS
    from workers.providers.base import Http, ProviderError

    redact.register(*config.secret_values())  # tokens minted by the checks register themselves
    configure()  # what a library logs meanwhile is scrubbed too
    results: dict[str, dict[str, Any]] = {}
    for name, configured in config.targets.items():
        label = f"{name} ({configured.provider})"
        result: dict[str, Any] = {"provider": configured.provider, "ok": None, "mirror": None, "error": None}
        results[name] = result
        if configured.templated and repo is None:
            say(f"{label}: SKIPPED: its mirror is named after the pushed repository; "
                "check it for one with --repo owner/name")
            continue
        try:
            target = mirrors.render(configured, repo or "")
            if configured.templated:
                result["mirror"] = mirrors.name(target)
                label += f" {result['mirror']}"
            PROVIDERS[target.provider].check(target, Http(target, target.provider))
        except mirrors.UnusableName as exc:
            result.update(ok=False, error=str(exc))
        except ProviderError as exc:
            result.update(ok=False, error=redact.scrub(exc.reason))
        else:
            result["ok"] = True
        say(f"{label}: OK" if result["ok"] else f"{label}: FAILED: {result['error']}")
    return results


@click.command()
@click.option("--dry-run", is_flag=True, help="only report what is missing; redeliver nothing")
@json_option
def sweep(dry_run: bool, as_json: bool) -> None:
    """One redelivery sweep of every source with an `api:` block: print what it found and did."""
    from bridge import redact
    from bridge.config import ConfigError
    from bridge.connection import connect
    from bridge.store import Store
    from workers.context import context
    from workers.sweep import sweep_all

    try:
        config = context().config
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not any(source.api for source in config.sources.values()):
        raise click.ClickException("no source has an `api:` block; nothing to sweep")
    configure()
    reports = sweep_all(config, Store(connect(), config.retention), dry_run=dry_run)
    if not reports:
        raise click.ClickException("another sweep is running; try again in a minute")
    if as_json:
        click.echo(json.dumps([redact.scrub(asdict(report)) for report in reports], indent=2))
        sys.exit(1 if any(report.errors for report in reports) else 0)
    for report in reports:
        verb = "would redeliver" if dry_run else "redelivered"
        click.echo(f"{report.source}: {report.listed} deliveries listed, {report.found} missed, "
                   f"{verb} {report.found if dry_run else report.redelivered}, {report.failed} failed")
        for guid in report.missed:
            click.echo(f"  missed: {guid}")
        for error in report.errors:
            click.echo(f"  error: {redact.scrub(error)}")
    if any(report.errors for report in reports):
        sys.exit(1)
