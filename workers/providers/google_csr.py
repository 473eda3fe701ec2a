"""Google Cloud Source Repositories: ``repos.sync`` answers a long-running Operation, followed to done.

Auth is a Bearer OAuth2 token: the target's static ``token``, or one minted from its
service-account file by google-auth (a JWT-bearer grant posted to the file's ``token_uri``) and
cached per process until shortly before it expires. google-auth's token request goes through
the target's ``Http``, so the token endpoint's errors are classified like any provider answer,
and google-auth's own retry loop (which sleeps) never runs: it only ever sees a 200. Both
credentials minted on the way, the signed JWT assertion google-auth sends and the access token
it gets back, are registered with the scrubber (``bridge.redact``) before they are used.

Unconfirmed: Google's discovery document lists no operations resource. When polling
``GET /v1/{operation.name}`` answers 404, 405 or 501, the sync was accepted but cannot be
followed: the job ends completed with ``remote.confirmed: false`` (CONTRACTS.md).
"""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs

import requests
from google.auth import exceptions, transport
from google.oauth2 import service_account

from bridge import redact
from bridge.config import GoogleCsrTarget
from workers.providers.base import Http, Permanent, Remote, json_body
from workers.providers.common import Token, TokenCache, bearer

NAME = "google-csr"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
UNPOLLABLE = (404, 405, 501)
TOKEN_LIFE = 3600.0  # Google's access tokens live an hour, and google-auth's JWT assertions as long
TOKENS = TokenCache()


def trigger(target: GoogleCsrTarget, job: dict[str, Any], http: Http) -> Remote:
    """``POST {base}/v1/{repo}:sync`` with an empty body (Google refuses any other)."""
    response = _request(target, http, "POST", f"{target.base_url}/v1/{target.repo}:sync")
    return _remote(json_body(response, NAME))


def poll(target: GoogleCsrTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    response = _request(target, http, "GET", f"{target.base_url}/v1/{remote.id}", ok=(200, *UNPOLLABLE))
    if response.status_code in UNPOLLABLE:
        note = (f"Google answered {response.status_code} to the operation poll: the sync was accepted, "
                "its outcome cannot be seen")
        return Remote(id=remote.id, status=remote.status, state="completed",
                      details={**remote.details, "confirmed": False, "unconfirmed": note})
    return _remote(json_body(response, NAME))


def check(target: GoogleCsrTarget, http: Http) -> None:
    """Read the repo (``repos.get``): authenticated, read-only, and it mints a token if need be."""
    _request(target, http, "GET", f"{target.base_url}/v1/{target.repo}")


def _request(target: GoogleCsrTarget, http: Http, method: str, url: str, **kwargs: Any) -> requests.Response:
    if target.token is not None:
        return http.request(method, url, headers=bearer(target.token.get_secret_value()), **kwargs)
    path = str(target.credentials_file)
    return TOKENS.call(path, lambda: _mint(path, http),
                       lambda token: http.request(method, url, headers=bearer(token), **kwargs))


def _mint(path: str, http: Http) -> Token:
    """A fresh access token for the service account (the file is read anew: a rotated key is picked up)."""
    try:
        credentials = service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
    except (OSError, ValueError) as exc:
        raise Permanent(f"{NAME}: cannot use the service-account file {path}: {exc}") from None
    try:
        credentials.refresh(_Transport(http))
    except exceptions.GoogleAuthError as exc:  # a 200 without an access token, say
        raise Permanent(f"{NAME}: the token endpoint's answer is unusable: {exc.args[0] if exc.args else exc}") \
            from None
    expiry = credentials.expiry  # naive UTC; None if the endpoint gave no expires_in
    token = Token(credentials.token, expiry.replace(tzinfo=UTC).timestamp() if expiry else time.time() + TOKEN_LIFE)
    redact.register(token.value, expires_at=token.expires_at)
    return token


class _Transport(transport.Request):
    """google-auth's HTTP hook, answered by the target's Http: same timeouts, same error classes."""

    def __init__(self, http: Http):
        self.http = http

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> transport.Response:
        form = body.decode() if isinstance(body, bytes) else body if isinstance(body, str) else ""
        redact.register(*parse_qs(form).get("assertion", []), expires_at=time.time() + TOKEN_LIFE)
        return _Answer(self.http.request(method, url, data=body, headers=headers))


class _Answer(transport.Response):
    def __init__(self, response: requests.Response):
        self.response = response

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> Any:
        return self.response.headers

    @property
    def data(self) -> bytes:
        return self.response.content


def _remote(operation: dict[str, Any]) -> Remote:
    """An Operation: ``done`` with ``error`` failed, ``done`` otherwise completed, else running."""
    metadata = operation.get("metadata") or {}
    details = {key: metadata[key] for key in ("statusMessage", "startTime", "updateTime") if key in metadata}
    name = operation.get("name")
    if not operation.get("done"):
        return Remote(id=name, status="running", details=details)
    error = operation.get("error")
    if error:
        reason = error.get("message") or "Google reported the sync failed"
        return Remote(id=name, status="done", state="failed", error=f"{reason} (code {error.get('code')})",
                      details={**details, "error": error})
    return Remote(id=name, status="done", state="completed", details=details)
