"""Bitbucket Data Center ref sync: enabling sync syncs the fork before the answer, so nothing is polled.

The trigger does the whole sync, in several calls: ``GET`` the status (``lastSync`` before),
``POST {"enabled": true}``, then per diverged ref the target's ``on_diverged``: ``report`` lists
them, ``merge`` / ``discard`` ``POST .../synchronize`` each (``204`` in sync, ``200`` still out
of sync, e.g. AHEAD after a merge, ``409`` not applied), then the status is read again.

Unconfirmed: whether enabling an already enabled repo syncs again. When it did not (the repo was
enabled and ``lastSync`` did not move), sync is disabled and enabled again, which certainly
syncs, and ``remote.unconfirmed`` says so. Should the second enable fail, the retried trigger
finds sync disabled and enables it. Route ref filters are not applied: Bitbucket syncs the
whole fork.
"""

from __future__ import annotations

from typing import Any

from bridge.config import BitbucketDcTarget
from workers.providers.base import Http, Remote, describe_error, json_body
from workers.providers.common import bearer, iso, parse_time

NAME = "bitbucket-dc"
MERGE_MESSAGE = "Merge upstream changes (syncbridge)"
_ACTIONS = {"merge": "MERGE", "discard": "DISCARD"}
_KINDS = {"ahead": "aheadRefs", "diverged": "divergedRefs", "orphaned": "orphanedRefs"}


def trigger(target: BitbucketDcTarget, job: dict[str, Any], http: Http) -> Remote:
    before = _status(target, http)
    status = _enable(target, http)
    notes: dict[str, Any] = {}
    if before.get("enabled") and status.get("lastSync") == before.get("lastSync"):
        http.request("POST", _sync_url(target), ok=(200, 204), json={"enabled": False}, headers=_auth(target))
        status = _enable(target, http)
        notes["unconfirmed"] = "enabling the already enabled repo did not sync it, so sync was disabled and enabled"
    action = _ACTIONS.get(target.on_diverged)
    diverged = _refs(status, "diverged")
    if action and diverged:
        notes["synchronized"] = [_synchronize(target, http, ref, action) for ref in diverged]
        status = _status(target, http)
    return _outcome(status, notes)


def poll(target: BitbucketDcTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    """Only a job resumed between its trigger and its end gets here: report the status as it is now."""
    return _outcome(_status(target, http), {})


def check(target: BitbucketDcTarget, http: Http) -> None:
    """Read the sync status: authenticated, read-only."""
    _status(target, http)


def _sync_url(target: BitbucketDcTarget) -> str:
    return f"{target.base_url}/rest/sync/latest/projects/{target.project}/repos/{target.repo}"


def _auth(target: BitbucketDcTarget) -> dict[str, str]:
    return bearer(target.token.get_secret_value())


def _status(target: BitbucketDcTarget, http: Http) -> dict[str, Any]:
    return json_body(http.request("GET", _sync_url(target), headers=_auth(target)), NAME)


def _enable(target: BitbucketDcTarget, http: Http) -> dict[str, Any]:
    response = http.request("POST", _sync_url(target), json={"enabled": True}, headers=_auth(target))
    return json_body(response, NAME)


def _synchronize(target: BitbucketDcTarget, http: Http, ref: str, action: str) -> dict[str, Any]:
    """Apply MERGE or DISCARD to one diverged ref and say what came of it."""
    body: dict[str, Any] = {"refId": ref, "action": action}
    if action == "MERGE":  # DISCARD takes no context
        body["context"] = {"commitMessage": MERGE_MESSAGE}
    response = http.request("POST", f"{_sync_url(target)}/synchronize", ok=(200, 204, 409), json=body,
                            headers=_auth(target))
    if response.status_code == 204:
        result = "in sync"
    elif response.status_code == 200:
        result = str(json_body(response, NAME).get("state", "out of sync")).lower()
    else:
        result = f"not applied: {describe_error(response)}"
    return {"ref": ref, "action": action, "result": result}


def _outcome(status: dict[str, Any], notes: dict[str, Any]) -> Remote:
    """Completed, with refs still out of sync as warnings; failed if Bitbucket cannot sync this repo."""
    summary = {**_summary(status), **notes}
    if not status.get("available", True):
        return Remote(id=None, status="unavailable", state="failed", details=summary,
                      error="Bitbucket says ref sync is not available for this repository (it must be a fork "
                            "whose owner can still read its origin)")
    warnings = [f"{kind} refs left as they are: {', '.join(summary[kind])}" for kind in ("diverged", "orphaned")
                if summary[kind]]
    if warnings:
        summary["warnings"] = warnings
    return Remote(id=None, status="synced", state="completed", details=summary)


def _refs(status: dict[str, Any], kind: str) -> list[str]:
    return [str(ref.get("id")) for ref in status.get(_KINDS[kind]) or [] if isinstance(ref, dict)]


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    """The status as the job shows it: when it last synced, and each kind of out-of-sync ref by id."""
    last_sync = parse_time(status.get("lastSync"))
    return {"lastSync": iso(last_sync) if last_sync else None, "enabled": status.get("enabled"),
            **{kind: _refs(status, kind) for kind in _KINDS}}
