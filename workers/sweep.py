"""Redelivery sweeps: ask GitHub again for pushes the bridge missed.

GitHub never retries a failed delivery by itself; it keeps each hook's deliveries for three days
and can redeliver one on request. A sweep lists the recent deliveries of every source with an
``api:`` block and asks for a redelivery of each push that

- never got a 2xx from the bridge (it was down, or answered 503 while Redis was), or
- got a 202 (accepted) that the bridge no longer has a record of (Redis lost data),

at most once per delivery, and only within GitHub's retention window. A redelivery carries the
same ``X-GitHub-Delivery``, so the bridge's dedupe still holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.config import Config, Source
from bridge.store import Store
from workers.github_api import GitHubError, HookDeliveries

log = logging.getLogger("syncbridge.sweep")
RETENTION = 3 * 86400  # GitHub keeps hook deliveries this long
MARGIN = 3600  # stay clear of the edge of that window
LOCK_SECONDS = 600


@dataclass
class SweepReport:
    """What one sweep of one source found and did."""

    source: str
    at: float = field(default_factory=time.time)
    listed: int = 0
    found: int = 0
    redelivered: int = 0
    failed: int = 0
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def sweep_all(config: Config, store: Store, dry_run: bool = False) -> list[SweepReport]:
    """Sweep every source with an ``api:`` block, one sweep at a time across all workers."""
    if not store.lock("sweep", LOCK_SECONDS):
        log.info("another worker is sweeping; skipped")
        return []
    try:
        return [sweep_source(name, source, store, dry_run) for name, source in config.sources.items()
                if source.api is not None and source.kind == "github"]
    finally:
        store.unlock("sweep")


def sweep_source(name: str, source: Source, store: Store, dry_run: bool = False) -> SweepReport:
    assert source.api is not None
    report = SweepReport(source=name, dry_run=dry_run)
    hook = HookDeliveries(source.api)
    attempts: dict[str, list[dict[str, Any]]] = {}
    try:
        for delivery in hook.deliveries(since=time.time() - RETENTION + MARGIN):
            report.listed += 1
            if delivery.get("event") == "push":
                attempts.setdefault(delivery["guid"], []).append(delivery)
    except GitHubError as exc:
        report.errors.append(str(exc))
    for guid, tries in attempts.items():
        if not _missed(name, guid, tries, store):
            continue
        report.found += 1
        report.missed.append(guid)
        if dry_run or not store.claim_redelivery(guid, RETENTION):
            continue
        try:
            hook.redeliver(max(tries, key=lambda t: t["delivered_at"])["id"])
            report.redelivered += 1
        except GitHubError as exc:
            report.failed += 1
            report.errors.append(str(exc))
    if not dry_run:
        store.save_sweep(name, asdict(report))
    log.info("sweep of %s: %d listed, %d missed, %d redelivered, %d failed", name, report.listed, report.found,
             report.redelivered, report.failed)
    return report


def _missed(source: str, guid: str, tries: list[dict[str, Any]], store: Store) -> bool:
    """No 2xx at all, or accepted (202) but no longer known to the bridge."""
    codes = {int(t.get("status_code") or 0) for t in tries}
    if not any(200 <= code < 300 for code in codes):
        return True
    return 202 in codes and store.delivery(source, guid) is None
