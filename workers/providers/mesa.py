"""Mesa / Depot upstream syncs: POST a sync, then GET it until completed or failed."""

from __future__ import annotations

from typing import Any

from bridge.config import MesaTarget
from workers.providers.base import Http, Remote, json_body

NAME = "mesa"
_STATES = {"queued": "running", "in_progress": "running", "completed": "completed", "failed": "failed"}


def trigger(target: MesaTarget, job: dict[str, Any], http: Http) -> Remote:
    body: dict[str, Any] = {"direction": target.direction}
    ref_globs = _ref_globs(job.get("refs"))
    if ref_globs:
        body["ref_globs"] = ref_globs
    response = http.request("POST", _syncs_url(target), ok=(200, 201), json=body, headers=_auth(target))
    return _remote(json_body(response, NAME))


def poll(target: MesaTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    response = http.request("GET", f"{_syncs_url(target)}/{remote.id}", headers=_auth(target))
    return _remote(json_body(response, NAME))


def check(target: MesaTarget, http: Http) -> None:
    """List the repo's syncs: authenticated, read-only."""
    http.request("GET", _syncs_url(target), headers=_auth(target))


def _syncs_url(target: MesaTarget) -> str:
    return f"{target.base_url}/{target.org}/{target.repo}/upstream/syncs"


def _auth(target: MesaTarget) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.token.get_secret_value()}"}


def _remote(sync: dict[str, Any]) -> Remote:
    refs = (sync.get("stats") or {}).get("refs") or []
    details: dict[str, Any] = {"attempt": sync.get("attempt"), "refs": refs}
    rejected = [ref["name"] for ref in refs if ref.get("outcome") == "rejected"]
    if rejected:
        details["warnings"] = [f"rejected refs: {', '.join(rejected)}"]
    status = str(sync.get("status", ""))
    state = _STATES.get(status, "running")
    return Remote(id=str(sync["id"]), status=status, state=state,  # type: ignore[arg-type]
                  error=(sync.get("error") or "Mesa reported the sync failed") if state == "failed" else None,
                  details=details)


def _ref_globs(refs: dict[str, list[str] | None] | None) -> dict[str, str] | None:
    """The route's filter in Mesa's form: one glob per kind, ``{a,b}`` for several, no prefix.

    A kind the route leaves open becomes ``**``; a kind the route excludes (``[]``) is omitted.
    Mesa's glob dialect is not documented beyond "glob": brace lists are unconfirmed.
    """
    if refs is None:
        return None
    out = {}
    for kind in ("branches", "tags"):
        globs = refs.get(kind)
        if globs is None:
            out[kind] = "**"
        elif globs:
            out[kind] = globs[0] if len(globs) == 1 else "{" + ",".join(globs) + "}"
    return out or None
