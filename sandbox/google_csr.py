"""Google Cloud Source Repositories: ``projects.repos.sync`` and its long-running Operation.

Base URL ``{sandbox}/google`` (the real one is ``https://sourcerepo.googleapis.com``), Bearer
OAuth2 access token. ``POST /v1/projects/{p}/repos/{r}:sync`` answers an Operation; whether
``GET /v1/{operation name}`` exists is unconfirmed upstream, so the ``pollable`` setting turns it
into a 404 (or ``unpollable_status``). ``POST /token`` is the OAuth2 token endpoint that
google-auth's service-account credentials call with a JWT-bearer grant; the tokens it mints
carry their scopes, and the API refuses one without cloud-platform, as Google does.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Response, request

from sandbox.common import ProviderSpec, Refusal, check_token, iso, json_response, scheme_token, state
from sandbox.state import MintedToken, Operation, SandboxState

NAME = "google-csr"
PREFIX = "/google"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_METADATA_TYPE = "type.googleapis.com/google.devtools.sourcerepo.v1.SyncRepoMetadata"
_EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
_REPO_NAME = re.compile(r"^projects/(?P<project>[^/]+)/repos/(?P<repo>.+)$")

_CANONICAL = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 409: "ABORTED", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
              500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
         "other valid authentication credential. "
         "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    403: "Request had insufficient authentication scopes.",
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Requests' of service 'sourcerepo.googleapis.com'.",
    500: "Internal error encountered.",
    501: "Operation is not implemented, or supported, or enabled.",
    503: "The service is currently unavailable.",
}
_REASONS = {401: "ACCESS_TOKEN_TYPE_UNSUPPORTED", 403: "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}


def error(status: int, message: str | None = None) -> Response:
    """google.rpc.Status inside ``error``; auth failures carry an ErrorInfo and WWW-Authenticate."""
    body: dict[str, Any] = {"code": status, "message": message or _MESSAGES.get(status, "Request failed."),
                            "status": _CANONICAL.get(status, "UNKNOWN")}
    headers = {}
    if status in _REASONS:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": _REASONS[status],
                            "domain": "googleapis.com",
                            "metadata": {"service": "sourcerepo.googleapis.com"}}]
        headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"' + (
            ', error="invalid_token"' if status == 401 else ', error="insufficient_scope"')
    return json_response({"error": body}, status, headers)


def token_error(status: int, message: str | None = None, kind: str | None = None) -> Response:
    """The OAuth2 token endpoint's own shape: ``{"error", "error_description"}``."""
    if kind is None:
        kind = "server_error" if status >= 500 else "invalid_client" if status == 401 else "invalid_request"
    description = message or f"The token endpoint answered {status}."
    return json_response({"error": kind, "error_description": description}, status)


def authenticate(st: SandboxState) -> None:
    accepted = check_token(NAME, scheme_token("Authorization", "Bearer"))
    if not accepted:
        raise Refusal(401)
    if isinstance(accepted, MintedToken) and SCOPE not in accepted.info["scopes"]:
        raise Refusal(403)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate, public=frozenset({f"{NAME}.token"}),
                    public_error=token_error)


@blueprint.post("/token")
def token() -> Response:
    """OAuth2 JWT-bearer grant: check the assertion's claims (not its signature) and mint a token."""
    if request.form.get("grant_type") != JWT_BEARER:
        raise Refusal(400, f"Invalid grant_type: {request.form.get('grant_type', '')}",
                      kind="unsupported_grant_type")
    claims = _jwt_claims(request.form.get("assertion", ""))
    now = time.time()
    if not (claims.get("iss") and claims.get("aud") and all(
            isinstance(claims.get(key), int | float) for key in ("iat", "exp"))):
        raise Refusal(400, "Invalid JWT: missing iss, aud, iat or exp claim.", kind="invalid_grant")
    if not (claims["iat"] - 300 <= now < claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
        raise Refusal(400, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                           "timeframe. Check your iat and exp values in the JWT claim.", kind="invalid_grant")
    lifetime = state().settings(NAME)["token_lifetime"]
    minted = state().mint(NAME, lifetime, "ya29.sandbox-", account=claims["iss"],
                          scopes=str(claims.get("scope", "")).split())
    return json_response({"access_token": minted.token, "expires_in": int(lifetime), "token_type": "Bearer"})


@blueprint.post("/v1/projects/<project>/repos/<path:repo>:sync")
def sync(project: str, repo: str) -> Response:
    """The request body must be empty (an empty JSON object is an empty message too)."""
    raw = request.get_data(cache=True, as_text=True).strip()
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refusal(400, "Invalid JSON payload received.") from None
        if body != {}:
            raise Refusal(400, f"Invalid JSON payload received. Unknown name {body!r}: Cannot find field.")
    st = state()
    name = f"projects/{project}/repos/{repo}"
    op = st.create_operation(NAME, name, f"operations/{uuid.uuid4().hex}")
    with st.lock:
        return json_response(_operation(op))


@blueprint.get("/v1/<path:name>")
def get(name: str) -> Response:
    """``GET /v1/{name}``: an operation (when pollable) or a repo resource."""
    st = state()
    if name.startswith("operations/"):
        settings = st.settings(NAME)
        if not settings["pollable"]:
            raise Refusal(settings["unpollable_status"])
        with st.lock:
            op = st.operation(NAME, name)
            if op is None:
                raise Refusal(404)
            op.observe(poll=True)
            return json_response(_operation(op))
    match = _REPO_NAME.match(name)
    if match is None:
        raise Refusal(404)
    project, repo = match["project"], match["repo"]
    return json_response({"name": name, "size": "0",
                          "url": f"https://source.developers.google.com/p/{project}/r/{repo}",
                          "mirrorConfig": {"url": f"https://github.com/{project}/{repo}.git",
                                           "webhookId": "sandbox-webhook",
                                           "deployKeyId": "sandbox-deploy-key"}})


def _operation(op: Operation) -> dict[str, Any]:
    """A google.longrunning.Operation with SyncRepoMetadata; ``response`` or ``error`` once done."""
    done = op.phase == "done"
    message = {"queued": "Sync queued", "running": "Syncing from mirror"}.get(op.phase) or (
        "Sync complete" if op.succeeded else "Sync failed")
    body: dict[str, Any] = {
        "name": op.id,
        "metadata": {"@type": _METADATA_TYPE, "name": op.key, "statusMessage": message,
                     "startTime": iso(op.started_at or op.created_at, 6),
                     "updateTime": iso(op.finished_at or time.time(), 6)},
        "done": done,
    }
    if done and op.succeeded:
        body["response"] = {"@type": _EMPTY_TYPE}
    elif done:
        body["error"] = {"code": 9, "message": op.error or "Failed to sync the repository from its mirror.",
                         "details": []}
    return body


def _jwt_claims(assertion: str) -> dict[str, Any]:
    """The JWT's payload, after checking it is a three-part RS256 token."""
    try:
        header_b64, payload_b64, signature = assertion.split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(payload_b64))
    except ValueError:
        raise Refusal(400, "Invalid JWT: not a well-formed JWT.", kind="invalid_grant") from None
    well_formed = isinstance(header, dict) and isinstance(claims, dict) and bool(signature)
    if not well_formed or header.get("alg") != "RS256":
        raise Refusal(400, "Invalid JWT Signature.", kind="invalid_grant")
    return claims


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
