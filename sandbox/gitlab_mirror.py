"""GitLab pull mirror: ``POST .../mirror/pull`` asks for a pull, ``GET .../mirror/pull`` shows how it went.

Base URL ``{sandbox}/gitlab``, ``PRIVATE-TOKEN`` header, project by numeric id or URL-encoded
path (an unencoded ``group/project`` is a 404, as on GitLab). GitLab never starts a second pull
while one runs, nor within its minimum interval of the previous one (``min_interval``, 5 min on
GitLab, 0 s here by default): such a trigger is still answered 200 but starts nothing, which
the client must notice from ``last_update_started_at``. Status words:
``none | scheduled | started | finished | failed | canceled``.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from flask import Blueprint, Response, request

from sandbox.common import (
    ProviderSpec,
    Refusal,
    check_token,
    empty_response,
    iso,
    json_response,
    raw_path,
    reason,
    state,
)
from sandbox.state import Operation, RepoSummary, SandboxState

NAME = "gitlab-mirror"
PREFIX = "/gitlab"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_PULL = "/api/v4/projects/<path:project>/mirror/pull"
_WORDS = {"queued": "scheduled", "running": "started", "completed": "finished", "failed": "failed",
          "canceled": "canceled"}
_MESSAGES = {401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Project Not Found",
             405: "405 Method Not Allowed", 429: "Retry later", 500: "500 Internal Server Error"}


def error(status: int, message: str | None = None) -> Response:
    return json_response({"message": message or _MESSAGES.get(status, f"{status} {reason(status)}")}, status)


def authenticate(st: SandboxState) -> None:
    if not check_token(NAME, request.headers.get("PRIVATE-TOKEN")):
        raise Refusal(401)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate)


@blueprint.post(_PULL)
def trigger(project: str) -> Response:
    """Start a pull unless one runs or the last began within ``min_interval``; 200 either way."""
    _check_project()
    st = state()
    settings = st.settings(NAME)
    with st.lock:
        latest = RepoSummary.of(st.history(NAME, project)).latest
        if latest is not None and (latest.phase != "done"
                                   or time.time() - latest.created_at < settings["min_interval"]):
            st.repo(NAME, project).setdefault("skipped_triggers", []).append(time.time())
        else:
            st.create_operation(NAME, project, f"pull-{st.serial()}")
    return empty_response(settings["trigger_status"])


@blueprint.get(_PULL)
def status(project: str) -> Response:
    """The pull mirror details; looking at them counts as a poll of the latest pull."""
    _check_project()
    st = state()
    with st.lock:
        return json_response(_details(project, st.poll_latest(NAME, project)))


def _check_project() -> None:
    """GitLab answers 404 unless the path is URL-encoded, 400 if not a mirror, 403 if paused."""
    project = raw_path().removeprefix(PREFIX + "/api/v4/projects/").removesuffix("/mirror/pull")
    if "/" in project:
        raise Refusal(404)
    settings = state().settings(NAME)
    if not settings["mirror"]:
        raise Refusal(400, "The project is not mirrored")
    if settings["paused"] and request.method == "POST":
        raise Refusal(403, "Mirroring for the project is on pause")


def _details(project: str, repo: RepoSummary) -> dict[str, Any]:
    latest = repo.latest
    return {
        "id": int(project) if project.isdigit() else zlib.crc32(project.encode()) % 1_000_000,
        "last_error": _last_error(latest),
        "last_successful_update_at": iso(repo.last_success.finished_at) if repo.last_success else None,
        "last_update_at": iso(repo.last_finished.finished_at) if repo.last_finished else None,
        "last_update_started_at": iso(repo.last_started.started_at) if repo.last_started else None,
        "update_status": "none" if latest is None else _WORDS.get(latest.phase) or _WORDS[latest.outcome],
        "url": f"https://*****:*****@upstream.example.com/{project}.git",
        "enabled": True,
        "mirror_trigger_builds": False,
        "only_mirror_protected_branches": None,
        "mirror_overwrites_diverged_branches": False,
        "mirror_branch_regex": None,
    }


def _last_error(latest: Operation | None) -> str | None:
    """GitLab clears last_error on success; a canceled pull has only the ``error`` setting, if any."""
    if latest is None or not latest.failed:
        return None
    if latest.outcome == "canceled":
        return latest.error
    return latest.error or "Error fetching remote: could not read from remote repository"
