"""GitLab pull mirror: ``POST .../mirror/pull`` asks for a pull, ``GET .../mirror/pull`` shows how it went.

The pull is ours once ``last_update_started_at`` is at or after the moment we asked
(``triggered_at``, the bridge's clock: hosts are expected to keep NTP time); then ``finished``
completes the job, ``failed`` and ``canceled`` fail it with ``last_error``.

GitLab starts no pull while one runs, nor within its minimum interval (the target's
``pull_interval``, 5 min by default) after the last one started, and still answers 200. The poll
notices: GitLab is idle, nothing started since we asked, and the last pull either started within
the interval before we asked or was still running then. If that last pull finished and started
after the push reached the bridge, it brought the push in: the job
completes and ``remote.skipped`` says so. Otherwise the push is not mirrored yet, and DESIGN.md
promises a sync that began after it: the job waits (``Remote.retry_after``) until the interval
has passed and asks again, ``remote.skipped`` saying why. It never waits on a pull that will not
come; the target's ``timeout`` still bounds the whole.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from bridge.config import GitlabMirrorTarget
from bridge.store import now_iso
from workers.providers.base import Http, Remote, State, json_body
from workers.providers.common import iso, parse_time

NAME = "gitlab-mirror"
_STATES: dict[str, State] = {"finished": "completed", "failed": "failed", "canceled": "failed"}
_BUSY = frozenset({"scheduled", "started"})
_SHOWN = ("last_update_started_at", "last_update_at", "last_successful_update_at", "last_error")


def trigger(target: GitlabMirrorTarget, job: dict[str, Any], http: Http) -> Remote:
    triggered_at = now_iso()
    http.request("POST", _pull_url(target), ok=(200, 201, 202), headers=_auth(target))
    return Remote(id=None, status="triggered", details={"triggered_at": triggered_at})


def poll(target: GitlabMirrorTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    if remote.details.get("pull_again_at"):  # GitLab skipped the last request and the interval is over
        again = trigger(target, job, http)
        again.details["skipped"] = remote.details.get("skipped")
        return again
    mirror = json_body(http.request("GET", _pull_url(target), headers=_auth(target)), NAME)
    status = str(mirror.get("update_status") or "")
    details = {**remote.details, **{key: mirror.get(key) for key in _SHOWN}}
    started, ended = parse_time(mirror.get("last_update_started_at")), parse_time(mirror.get("last_update_at"))
    asked = parse_time(remote.details["triggered_at"]) or datetime.now(UTC)
    if started is not None and started >= asked:
        state = _STATES.get(status, "running")
        error = (mirror.get("last_error") or f"GitLab's mirror pull ended {status}") if state == "failed" else None
        return Remote(id=None, status=status, state=state, error=error, details=details)
    why = None if started is None or status in _BUSY else _skip_reason(started, ended, asked, target.pull_interval)
    if started is None or why is None:  # GitLab has not picked the request up yet
        return Remote(id=None, status=status, details=details)
    pushed = _last_push(job)
    if status == "finished" and pushed is not None and started >= pushed:
        details["skipped"] = (f"GitLab skipped this pull ({why}); the pull that started at {iso(started)}, "
                              "after the push, brought it in")
        return Remote(id=None, status=status, state="completed", details=details)
    now = datetime.now(UTC)
    again = max(now, started + timedelta(seconds=target.pull_interval))
    missed = "before the push" if status == "finished" else f"and {status}"
    details["skipped"] = (f"GitLab skipped this pull ({why}); the last pull started at {iso(started)} {missed}: "
                          f"asking again at {iso(again)}")
    details["pull_again_at"] = iso(again)
    return Remote(id=None, status=status, details=details, retry_after=(again - now).total_seconds())


def _skip_reason(started: datetime, ended: datetime | None, asked: datetime, pull_interval: float) -> str | None:
    """Why an idle GitLab with no pull started since we asked ignored the request; None: it may still act."""
    if ended is not None and ended >= asked:
        return "a pull was running when this one was asked for"
    if (asked - started).total_seconds() < pull_interval:
        return "within GitLab's minimum pull interval"
    return None


def _last_push(job: dict[str, Any]) -> datetime | None:
    """When the newest push of the job reached the bridge, or a later moment.

    A push that joined the queued job (DESIGN.md, coalescing) left no time of its own, but every
    push joined before the job started.
    """
    return parse_time(job["created_at"] if int(job.get("pushes") or 1) == 1 else job.get("started_at"))


def check(target: GitlabMirrorTarget, http: Http) -> None:
    """Read the pull mirror's details: authenticated, read-only."""
    http.request("GET", _pull_url(target), headers=_auth(target))


def _pull_url(target: GitlabMirrorTarget) -> str:
    """The project by numeric id or URL-encoded path (GitLab answers 404 to an unencoded ``group/project``)."""
    return f"{target.base_url}/api/v4/projects/{quote(str(target.project), safe='')}/mirror/pull"


def _auth(target: GitlabMirrorTarget) -> dict[str, str]:
    return {"PRIVATE-TOKEN": target.token.get_secret_value()}
