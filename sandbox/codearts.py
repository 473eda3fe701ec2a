"""Huawei Cloud CodeArts Repo remote mirror, and the IAM token endpoint it needs.

Base URL ``{sandbox}/codearts``. ``POST /v4/repositories/{id}/remote-mirror`` answers
``{"jid"}``; no endpoint takes the jid, so the client follows ``GET`` of the same path, whose
``update_status`` goes ``scheduled -> started -> finished | failed`` (words unconfirmed
upstream; these are the ones CONTRACTS.md expects). ``X-Auth-Token`` takes the static
credential or a token from ``POST /iam/v3/auth/tokens`` (password identity scoped to a
project; the token comes back in ``X-Subject-Token`` with a 201). ``GET /v1/repositories/repoid``
gives any ``group_name``/``repository_name`` an id of its own, the same every time it is asked.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
import zlib
from typing import Any

from flask import Blueprint, Response, request

from sandbox.common import ProviderSpec, Refusal, check_token, iso, json_body, json_response, reason, state
from sandbox.state import IAM_CREDENTIAL, RepoSummary, SandboxState

NAME = "codearts"
PREFIX = "/codearts"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_CODES = {400: ("CH.004400", "Invalid request parameters."),
          401: ("DEV.00000003", "Authentication information expired."),
          403: ("CH.004403", "Insufficient permissions. Apply for the required permission and try again."),
          404: ("CH.004404", "Repository Not Found"),
          429: ("APIGW.0308", "The throttling threshold has been reached."),
          500: ("CH.004500", "System error. Try again later.")}
_WORDS = {"queued": "scheduled", "running": "started", "completed": "finished", "failed": "failed"}
_MAX_ID = 2_147_483_647


def error(status: int, message: str | None = None) -> Response:
    code, default = _CODES.get(status, (f"CH.004{status}", reason(status)))
    return json_response({"error_code": code, "error_msg": message or default}, status)


def iam_error(status: int, message: str | None = None) -> Response:
    """IAM (Keystone-style) errors: ``{"error": {"code", "message", "title"}}``."""
    body = {"code": status, "message": message or reason(status), "title": reason(status)}
    return json_response({"error": body}, status)


def authenticate(st: SandboxState) -> None:
    if not check_token(NAME, request.headers.get("X-Auth-Token")):
        raise Refusal(401)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate, public=frozenset({f"{NAME}.iam_token"}),
                    public_error=iam_error)


@blueprint.post("/iam/v3/auth/tokens")
def iam_token() -> Response:
    """Mint a project-scoped token for the configured ``user:password`` (any domain)."""
    body = json_body()
    try:
        auth = body["auth"]
        identity = auth["identity"]
        user = identity["password"]["user"]
        name, password = user["name"], user["password"]
    except (KeyError, TypeError):
        raise Refusal(400, "The body must carry auth.identity.password.user.{name,password}.") from None
    if "password" not in identity.get("methods", []):
        raise Refusal(400, "auth.identity.methods must include password.")
    project = (auth.get("scope") or {}).get("project") if isinstance(auth.get("scope"), dict) else None
    if not isinstance(project, dict) or not (project.get("name") or project.get("id")):
        raise Refusal(400, "A project scope (auth.scope.project.name or id) is required for this token.")
    expected_name, _, expected_password = state().credentials[IAM_CREDENTIAL].partition(":")
    if (name, password) != (expected_name, expected_password):
        raise Refusal(401, "The username or password is wrong.")
    lifetime = state().settings(NAME)["token_lifetime"]
    minted = state().mint(NAME, lifetime, "MIIsandbox-", user=name, project=project)
    domain = user.get("domain") or {}
    document = {"token": {
        "methods": ["password"], "expires_at": iso(minted.expires_at, 6), "issued_at": iso(time.time(), 6),
        "user": {"name": name, "id": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                 "domain": {"name": domain.get("name", name), "id": domain.get("id", uuid.uuid4().hex)}},
        "project": {"name": project.get("name", "sandbox-project"),
                    "id": project.get("id", uuid.uuid4().hex)},
        "roles": [{"name": "te_admin", "id": "0"}], "catalog": [],
    }}
    return json_response(document, 201, headers={"X-Subject-Token": minted.token})


@blueprint.get("/v1/repositories/repoid")
def repoid() -> Response:
    """The id of the repository named by group and name: every name exists here, each with an id of its own."""
    group, name = request.args.get("group_name"), request.args.get("repository_name")
    if not group or not name:
        raise Refusal(400, "group_name and repository_name are required.")
    return json_response({"result": zlib.crc32(f"{group}/{name}".encode()) % _MAX_ID or 1, "status": "success"})


@blueprint.post("/v4/repositories/<repository_id>/remote-mirror")
def trigger(repository_id: str) -> Response:
    key = _repository(repository_id)
    _validate(json_body(required=False))
    st = state()
    op = st.create_operation(NAME, key, str(uuid.uuid4()))
    return json_response({"jid": op.id})


@blueprint.get("/v4/repositories/<repository_id>/remote-mirror")
def status(repository_id: str) -> Response:
    """The mirror's status document; looking at it counts as a poll of the latest sync."""
    st = state()
    with st.lock:
        return json_response(_status(st.poll_latest(NAME, _repository(repository_id))))


def _repository(repository_id: str) -> str:
    if not repository_id.isdigit() or not 1 <= int(repository_id) <= _MAX_ID:
        raise Refusal(400, f"repository_id must be an integer in 1~{_MAX_ID}.")
    return repository_id


def _validate(body: Any) -> None:
    """All fields optional; username and password must be Base64, force_fetch a boolean."""
    if body is None:
        return
    if not isinstance(body, dict):
        raise Refusal(400, "The request body must be a JSON object.")
    for field in ("username", "password"):
        if body.get(field):
            try:
                base64.b64decode(body[field], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise Refusal(400, f"{field} must be Base64-encoded.") from None
    if "force_fetch" in body and not isinstance(body["force_fetch"], bool):
        raise Refusal(400, "force_fetch must be a boolean.")


def _status(repo: RepoSummary) -> dict[str, Any]:
    latest = repo.latest
    return {
        "update_status": "none" if latest is None else _WORDS.get(latest.phase) or _WORDS[latest.outcome],
        "last_update_at": iso(repo.last_finished.finished_at) if repo.last_finished else None,
        "last_successful_update_at": iso(repo.last_success.finished_at) if repo.last_success else None,
        "number_of_failures": repo.failures,
        "last_error": (latest.error or "git fetch failed: could not read from the remote repository")
        if latest is not None and latest.failed else None,
    }
