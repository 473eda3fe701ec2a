"""Mesa / Depot upstream syncs: ``POST /{org}/{repo}/upstream/syncs`` enqueues, ``GET .../{id}`` follows.

Base URL ``{sandbox}/mesa/v1`` (the real one is ``https://api.mesa.dev/v1``), Bearer API key.
A sync walks ``queued -> in_progress -> completed|failed``; ``stats.refs`` appears once it ends
well, from the ``refs`` setting (put a ``rejected`` ref there to exercise warnings).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from flask import Blueprint, Response

from sandbox.common import (
    ProviderSpec,
    Refusal,
    check_token,
    iso,
    json_body,
    json_response,
    reason,
    scheme_token,
    state,
)
from sandbox.state import Operation, SandboxState

NAME = "mesa"
PREFIX = "/mesa/v1"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 415: "unsupported_media_type",
          429: "rate_limited"}
_MESSAGES = {401: "Missing or invalid API key", 404: "Not found", 429: "Rate limit exceeded",
             500: "Internal server error"}
_WORDS = {"queued": "queued", "running": "in_progress"}
_REF_GLOB_KINDS = ("branches", "tags")


def error(status: int, message: str | None = None, details: dict[str, Any] | None = None) -> Response:
    """Mesa's error document; ``trace_id`` is attached to 5xx answers only, as its spec says."""
    body: dict[str, Any] = {"code": _CODES.get(status, "internal_error" if status >= 500 else "error"),
                            "message": message or _MESSAGES.get(status, reason(status)),
                            "details": details or {}}
    if status >= 500:
        body["trace_id"] = uuid.uuid4().hex
    return json_response({"error": body}, status)


def authenticate(st: SandboxState) -> None:
    if not check_token(NAME, scheme_token("Authorization", "Bearer")):
        raise Refusal(401)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate)


@blueprint.post("/<org>/<repo>/upstream/syncs")
def create_sync(org: str, repo: str) -> Response:
    body = json_body()
    direction, ref_globs = _validate(body)
    st = state()
    op = st.create_operation(NAME, f"{org}/{repo}", f"sync_{uuid.uuid4().hex}", direction=direction,
                             ref_globs=ref_globs, refs=st.settings(NAME)["refs"])
    with st.lock:
        return json_response(_sync(op), 201)


@blueprint.get("/<org>/<repo>/upstream/syncs/<sync_id>")
def get_sync(org: str, repo: str, sync_id: str) -> Response:
    st = state()
    with st.lock:
        op = st.operation(NAME, sync_id)
        if op is None or op.key != f"{org}/{repo}":
            raise Refusal(404, f"Sync {sync_id} not found")
        op.observe(poll=True)
        return json_response(_sync(op))


@blueprint.get("/<org>/<repo>/upstream/syncs")
def list_syncs(org: str, repo: str) -> Response:
    """The repo's syncs, newest first (what the bridge's credential check reads; counts no poll)."""
    st = state()
    with st.lock:
        syncs = [_sync(op) for op in reversed(st.history(NAME, f"{org}/{repo}"))]
    return json_response({"syncs": syncs, "next_cursor": None})


def _validate(body: Any) -> tuple[str, dict[str, str]]:
    """Mesa's request schema: ``direction`` required, ``ref_globs`` optional, nothing else."""
    if not isinstance(body, dict):
        raise Refusal(400, "Request body must be a JSON object")
    extra = set(body) - {"direction", "ref_globs"}
    if extra:
        raise Refusal(400, "Unrecognized key(s) in object", details={"keys": sorted(extra)})
    if body.get("direction") not in ("pull", "push"):
        raise Refusal(400, "direction must be one of: pull, push", details={"field": "direction"})
    globs = body.get("ref_globs")
    if globs is None:
        return body["direction"], dict.fromkeys(_REF_GLOB_KINDS, "*")
    if (not isinstance(globs, dict) or not globs or set(globs) - set(_REF_GLOB_KINDS)
            or not all(isinstance(value, str) for value in globs.values())):
        raise Refusal(400, "ref_globs must be an object with a string branches and/or tags, nothing else",
                      details={"field": "ref_globs"})
    return body["direction"], {kind: globs.get(kind, "") for kind in _REF_GLOB_KINDS}


def _sync(op: Operation) -> dict[str, Any]:
    """The sync document as Mesa returns it, for the operation's current phase."""
    status = _WORDS.get(op.phase) or op.outcome
    return {
        "id": op.id,
        "repo_id": "repo_" + hashlib.sha1(op.key.encode()).hexdigest()[:20],
        "direction": op.data["direction"],
        "status": status,
        "attempt": 1,
        "ref_globs": op.data["ref_globs"],
        "stats": {"refs": op.data["refs"]} if status == "completed" else None,
        "error": (op.error or "upstream fetch failed: could not read from remote repository")
        if status == "failed" else None,
        "created_at": iso(op.created_at),
        "started_at": iso(op.started_at),
        "finished_at": iso(op.finished_at),
    }

