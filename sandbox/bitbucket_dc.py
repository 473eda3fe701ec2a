"""Bitbucket Data Center ref sync: enabling syncs at once, so there is nothing to poll.

Base URL ``{sandbox}/bitbucket``, Bearer HTTP access token, everything under
``/rest/sync/latest/projects/{projectKey}/repos/{slug}``. The refs left out of sync come from
the ``ahead_refs`` / ``diverged_refs`` / ``orphaned_refs`` settings (ref ids such as
``refs/heads/feature``), snapshot at each sync; ``/synchronize`` answers what the
``synchronize`` setting says (204 in sync, 200 still out, 409 refused). Each sync is also kept
as an already-done operation, so ``/_sandbox/operations`` shows them like everyone else's.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, request

from sandbox.common import (
    ProviderSpec,
    Refusal,
    check_token,
    empty_response,
    json_body,
    json_response,
    reason,
    scheme_token,
    state,
)
from sandbox.state import SandboxState

NAME = "bitbucket-dc"
PREFIX = "/bitbucket"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_REPO = "/rest/sync/latest/projects/<project_key>/repos/<slug>"
_KINDS = {"aheadRefs": ("ahead_refs", "AHEAD"), "divergedRefs": ("diverged_refs", "DIVERGED"),
          "orphanedRefs": ("orphaned_refs", "ORPHANED")}
_EXCEPTIONS = {
    400: "com.atlassian.bitbucket.validation.ArgumentValidationException",
    401: "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
    403: "com.atlassian.bitbucket.AuthorisationException",
    404: "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
    409: "com.atlassian.bitbucket.repository.sync.RefSyncNotAvailableException",
    429: "com.atlassian.bitbucket.throttle.ThrottledException",
}
_MESSAGES = {401: "Authentication failed. Please check your credentials and try again.",
             429: "Too many requests. Please wait and try again.",
             500: "An unexpected error occurred. Please try again."}


def error(status: int, message: str | None = None, exception: str | None = None) -> Response:
    message = message or _MESSAGES.get(status, reason(status))
    return json_response({"errors": [{"context": None, "message": message,
                                      "exceptionName": exception or _EXCEPTIONS.get(status)}]}, status)


def authenticate(st: SandboxState) -> None:
    if not check_token(NAME, scheme_token("Authorization", "Bearer")):
        raise Refusal(401)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate)


@blueprint.get(_REPO)
def status(project_key: str, slug: str) -> Response:
    """RestRefSyncStatus, or with ``?at=<ref>`` the same document narrowed to that one ref."""
    with state().lock:
        return json_response(_status(_repo(project_key, slug), request.args.get("at")))


@blueprint.post(_REPO)
def enable(project_key: str, slug: str) -> Response:
    """``{"enabled": true}`` syncs before answering; ``{"enabled": false}`` answers 204."""
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise Refusal(400, "enabled is required and must be a boolean")
    st = state()
    settings = st.settings(NAME)
    with st.lock:
        repo = _repo(project_key, slug)
        if not body["enabled"]:
            repo["enabled"] = False
            return empty_response(204)
        if not settings["available"] or settings["outcome"] == "failed":
            raise Refusal(409, settings["error"] or f"Ref synchronization is not available for "
                                                    f"{project_key}/{slug}")
        if not repo["enabled"] or settings["resync_enabled"]:
            _sync(st, repo, settings, f"{project_key}/{slug}")
        repo["enabled"] = True
        return json_response(_status(repo, None))


@blueprint.post(_REPO + "/synchronize")
def synchronize(project_key: str, slug: str) -> Response:
    """MERGE or DISCARD one out-of-sync ref; the answer is the ``synchronize`` setting's."""
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("refId"), str):
        raise Refusal(400, "refId is required")
    action = str(body.get("action", "")).upper()
    if action not in ("MERGE", "DISCARD"):
        raise Refusal(400, f"action must be MERGE or DISCARD, not {body.get('action')!r}")
    st = state()
    answer = st.settings(NAME)["synchronize"]
    with st.lock:
        repo = _repo(project_key, slug)
        kind = _find(repo, body["refId"])
        if answer == 409 or not repo["enabled"] or kind is None:
            raise Refusal(409, "Synchronization is not available or not enabled for this repository, "
                               "or the ref is already in sync")
        repo["refs"][kind].remove(body["refId"])
        if answer == 204:
            return empty_response(204)
        if action == "MERGE":  # merged, but the ref still has commits upstream lacks
            kind = "aheadRefs"
        repo["refs"][kind].append(body["refId"])
        return json_response(_rejected(body["refId"], _KINDS[kind][1]))


def _repo(project_key: str, slug: str) -> dict[str, Any]:
    return state().repo(NAME, f"{project_key}/{slug}", enabled=False, last_sync=None,
                        refs={kind: [] for kind in _KINDS})


def _sync(st: SandboxState, repo: dict[str, Any], settings: dict[str, Any], key: str) -> None:
    """Run one (instant) sync: stamp it and take the out-of-sync refs from the settings."""
    st.create_operation(NAME, key, f"sync-{st.serial()}", instant=True)
    repo["last_sync"] = int(time.time() * 1000)
    repo["refs"] = {kind: [str(ref) for ref in settings[setting]] for kind, (setting, _) in _KINDS.items()}


def _status(repo: dict[str, Any], at: str | None) -> dict[str, Any]:
    available = state().settings(NAME)["available"]
    doc: dict[str, Any] = {"available": available, "enabled": repo["enabled"]}
    if repo["last_sync"] is not None:
        doc["lastSync"] = repo["last_sync"]
    for kind, (_, ref_state) in _KINDS.items():
        refs = [ref for ref in repo["refs"][kind] if at in (None, ref, _display(ref))]
        doc[kind] = [_rejected(ref, ref_state) for ref in refs]
    return doc


def _rejected(ref: str, ref_state: str) -> dict[str, Any]:
    """RestRejectedRef: the ref, what kind it is and how it is out of sync."""
    tag = ref.startswith("refs/tags/")
    return {"id": ref, "displayId": _display(ref), "type": "TAG" if tag else "BRANCH", "state": ref_state,
            "tag": tag}


def _display(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def _find(repo: dict[str, Any], ref: str) -> str | None:
    return next((kind for kind, refs in repo["refs"].items() if ref in refs), None)
