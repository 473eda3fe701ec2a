"""Gitea / Forgejo pull mirror: ``POST .../mirror-sync`` (200, empty), then watch ``mirror_updated`` move.

Gitea keeps no sync status: the only sign of a finished sync is the repository's
``mirror_updated`` moving past its value from before the trigger. So the trigger reads the
repository first, then asks for the sync, in the same execution: a retried trigger reads the
value afresh. A failed sync leaves ``mirror_updated`` alone, so ``workers.jobs`` fails the job
at the target's ``timeout``. Comparing Gitea's own two values needs no clock of ours.
"""

from __future__ import annotations

from typing import Any

from bridge.config import GiteaMirrorTarget
from workers.providers.base import Http, Remote, json_body
from workers.providers.common import parse_time

NAME = "gitea-mirror"


def trigger(target: GiteaMirrorTarget, job: dict[str, Any], http: Http) -> Remote:
    before = _repository(target, http).get("mirror_updated")
    http.request("POST", f"{_repo_url(target)}/mirror-sync", headers=_auth(target))
    return Remote(id=None, status="triggered", details={"mirror_updated_before": before})


def poll(target: GiteaMirrorTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    updated = _repository(target, http).get("mirror_updated")
    before = parse_time(remote.details.get("mirror_updated_before"))
    after = parse_time(updated)
    moved = after is not None and (before is None or after > before)
    return Remote(id=None, status="updated" if moved else "waiting", state="completed" if moved else "running",
                  details={**remote.details, "mirror_updated": updated})


def check(target: GiteaMirrorTarget, http: Http) -> None:
    """Read the repository: authenticated, read-only."""
    _repository(target, http)


def _repo_url(target: GiteaMirrorTarget) -> str:
    return f"{target.base_url}/api/v1/repos/{target.repo}"


def _auth(target: GiteaMirrorTarget) -> dict[str, str]:
    return {"Authorization": f"token {target.token.get_secret_value()}"}


def _repository(target: GiteaMirrorTarget, http: Http) -> dict[str, Any]:
    return json_body(http.request("GET", _repo_url(target), headers=_auth(target)), NAME)
