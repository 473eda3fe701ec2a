"""Gitea / Forgejo pull mirror: ``POST .../mirror-sync`` (200, empty), then watch ``mirror_updated``.

Base URL ``{sandbox}/gitea``, ``Authorization: token <token>`` (Gitea also takes ``Bearer``).
Gitea has no sync status: the only sign of a finished sync is the repository's
``mirror_updated`` moving, so a successful sync moves it (by at least one second, since Gitea
keeps whole seconds) and a failed one leaves it alone. A sync asked for while one is pending
joins it, like Gitea's unique mirror queue.
"""

from __future__ import annotations

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
    reason,
    scheme_token,
    state,
)
from sandbox.state import RepoSummary, SandboxState

NAME = "gitea-mirror"
PREFIX = "/gitea"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_MESSAGES = {401: "token is required",
             403: "token does not have at least one of required scope(s): [write:repository]",
             404: "The target couldn't be found.", 429: "Too Many Requests", 500: "Internal Server Error"}
_DAY = 86400


def error(status: int, message: str | None = None) -> Response:
    return json_response({"message": message or _MESSAGES.get(status, reason(status)),
                          "url": f"{request.host_url}{PREFIX.strip('/')}/api/swagger"}, status)


def authenticate(st: SandboxState) -> None:
    token = scheme_token("Authorization", "token", "Bearer")
    if not check_token(NAME, token):
        raise Refusal(401, None if token is None else "user does not exist: invalid access token")


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate)


@blueprint.post("/api/v1/repos/<owner>/<repo>/mirror-sync")
def mirror_sync(owner: str, repo: str) -> Response:
    st = state()
    if not st.settings(NAME)["mirror"]:
        raise Refusal(400, "Repository is not a mirror")
    key = f"{owner}/{repo}"
    with st.lock:
        latest = RepoSummary.of(st.history(NAME, key)).latest
        if latest is None or latest.phase == "done":
            st.create_operation(NAME, key, f"mirror-{st.serial()}")
    return empty_response(200)


@blueprint.get("/api/v1/repos/<owner>/<repo>")
def repository(owner: str, repo: str) -> Response:
    """The repository; reading it counts as a poll of the pending sync."""
    st = state()
    key = f"{owner}/{repo}"
    with st.lock:
        summary = st.poll_latest(NAME, key)
        updated = _mirror_updated(key, summary)
        return json_response(_document(owner, repo, updated))


def _mirror_updated(key: str, summary: RepoSummary) -> int:
    """Stamp each newly finished successful sync, always later than the stamp before it."""
    st = state()
    repo = st.repo(NAME, key, mirror_updated=int(st.started_at) - _DAY)
    for op in summary.history:
        if op.succeeded and "mirror_updated" not in op.data:
            repo["mirror_updated"] = max(int(op.finished_at or 0), repo["mirror_updated"] + 1)
            op.data["mirror_updated"] = repo["mirror_updated"]
    return repo["mirror_updated"]


def _document(owner: str, repo: str, updated: int) -> dict[str, Any]:
    """The parts of Gitea's Repository a mirror client reads, plus enough to look real."""
    key = f"{owner}/{repo}"
    html_url = f"{request.host_url}{PREFIX.strip('/')}/{key}"
    mirror = state().settings(NAME)["mirror"]
    return {
        "id": zlib.crc32(key.encode()) % 1_000_000,
        "owner": {"id": zlib.crc32(owner.encode()) % 1_000_000, "login": owner, "username": owner},
        "name": repo, "full_name": key, "description": "", "empty": False, "private": False, "fork": False,
        "mirror": mirror, "size": 0, "html_url": html_url, "clone_url": html_url + ".git",
        "default_branch": "main",
        "created_at": iso(state().started_at - 30 * _DAY, 0), "updated_at": iso(updated, 0),
        "mirror_interval": "8h0m0s" if mirror else "",
        "mirror_updated": iso(updated, 0) if mirror else "0001-01-01T00:00:00Z",
    }
