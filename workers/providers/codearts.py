"""Huawei Cloud CodeArts Repo remote mirror: POST starts a mirror update, the repo's mirror status tells its end.

Auth is ``X-Auth-Token``: the target's static ``token``, or an IAM token minted with the
target's password identity (``POST {iam.endpoint}/v3/auth/tokens``, scoped to ``iam.project``,
token in the ``X-Subject-Token`` header), cached per process for its life (24 h, or the
``expires_at`` IAM states) and renewed shortly before it ends. A minted token is registered
with the scrubber (``bridge.redact``) as soon as it arrives, so a provider quoting it back
cannot put it in a job, a log line or a notification.

No endpoint takes the trigger's ``jid``, so the follow reads the repository's mirror status
(``GET .../remote-mirror``). The update is ours once ``last_update_at`` is at or after the
moment we triggered (``triggered_at``, the bridge's clock: hosts are expected to keep NTP
time); then ``finished`` completes it and ``failed`` fails it with ``last_error``. Anything
else, an older update's result included, is still running; ``workers.jobs`` fails the job at
the target's ``timeout``.

The repository is the target's ``repository_id``, or its ``repository`` (``group/name``, as in
the clone URL; a templated target's ``{owner}/{name}``), whose id is asked of CodeArts once
(``GET /v1/repositories/repoid?group_name=&repository_name=``, ``{"result": <id>, "status":
"success"}``) and kept for the life of the process. Unconfirmed: that the id this answers (its
documents call it the repository's "short id") is the one ``/v4/repositories/{id}`` takes.

Unconfirmed: the ``update_status`` words (``none | scheduled | started | finished | failed``
are expected) and whether ``last_update_at`` carries an offset (none is read as UTC); the job's
``remote.unconfirmed`` says so.
"""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from bridge import redact
from bridge.config import CodeartsTarget, HuaweiIam
from bridge.store import now_iso
from workers.providers.base import Http, Permanent, Remote, State, json_body
from workers.providers.common import Token, TokenCache, parse_time

NAME = "codearts"
IAM_TOKEN_LIFE = 24 * 3600.0
UNCONFIRMED = ("CodeArts does not document update_status: 'finished' and 'failed' are taken as the end "
               "once last_update_at is at or after triggered_at")
_STATES: dict[str, State] = {"finished": "completed", "failed": "failed"}
_PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")
_SHOWN = ("last_update_at", "last_successful_update_at", "number_of_failures", "last_error")
TOKENS = TokenCache()
REPOSITORY_IDS: dict[tuple[str, str], int] = {}  # (base_url, group/name) -> id: a repository's id never changes


def trigger(target: CodeartsTarget, job: dict[str, Any], http: Http) -> Remote:
    body: dict[str, Any] = {"force_fetch": target.force_fetch}
    if target.endpoint_uuid:
        body["endpoint_uuid"] = target.endpoint_uuid
    triggered_at = now_iso()
    task = json_body(_request(target, http, "POST", _mirror_url(target, http), json=body), NAME)
    return Remote(id=task.get("jid"), status="triggered",
                  details={"triggered_at": triggered_at, "unconfirmed": UNCONFIRMED})


def poll(target: CodeartsTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    mirror = json_body(_request(target, http, "GET", _mirror_url(target, http)), NAME)
    status = str(mirror.get("update_status") or "")
    updated, triggered = parse_time(mirror.get("last_update_at")), parse_time(remote.details["triggered_at"])
    ours = updated is not None and triggered is not None and updated >= triggered
    state: State = _STATES.get(status, "running") if ours else "running"
    error = (mirror.get("last_error") or "CodeArts reported the mirror update failed") if state == "failed" else None
    details = {**remote.details, **{key: mirror.get(key) for key in _SHOWN}}
    return Remote(id=remote.id, status=status, state=state, error=error, details=details)


def check(target: CodeartsTarget, http: Http) -> None:
    """Read the mirror status: authenticated, read-only (and it mints an IAM token if need be)."""
    _request(target, http, "GET", _mirror_url(target, http))


def _mirror_url(target: CodeartsTarget, http: Http) -> str:
    return f"{target.base_url}/v4/repositories/{_repository_id(target, http)}/remote-mirror"


def _repository_id(target: CodeartsTarget, http: Http) -> int | str:
    """The target's ``repository_id``, or the id CodeArts gives for its ``repository`` (kept per process)."""
    if target.repository_id is not None:
        return target.repository_id
    assert target.repository is not None  # the config guarantees one of the two
    repository = (target.base_url, target.repository)
    if repository not in REPOSITORY_IDS:
        group, _, name = target.repository.rpartition("/")
        answer = json_body(_request(target, http, "GET", f"{target.base_url}/v1/repositories/repoid",
                                    params={"group_name": group, "repository_name": name}), NAME)
        found = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(found, int) or isinstance(found, bool) or answer.get("status") != "success":
            error = (answer.get("error") or {}) if isinstance(answer, dict) else {}
            raise Permanent(f"{NAME}: CodeArts gave no id for the repository {target.repository!r}: "
                            f"{error.get('message') or answer}")
        REPOSITORY_IDS[repository] = found
    return REPOSITORY_IDS[repository]


def _request(target: CodeartsTarget, http: Http, method: str, url: str, **kwargs: Any) -> requests.Response:
    if target.token is not None:
        return http.request(method, url, headers={"X-Auth-Token": target.token.get_secret_value()}, **kwargs)
    iam = target.iam
    assert iam is not None  # the config guarantees one of token or iam
    return TOKENS.call((iam.endpoint, iam.domain, iam.username, iam.project), lambda: _mint(iam, http),
                       lambda token: http.request(method, url, headers={"X-Auth-Token": token}, **kwargs))


def _mint(iam: HuaweiIam, http: Http) -> Token:
    """A project-scoped IAM token for the password identity; it lives as long as IAM's ``expires_at`` says.

    ``iam.project`` is a project name (the region, e.g. ``cn-north-4``) or a 32-hex project id.
    """
    project = {"id" if _PROJECT_ID.match(iam.project) else "name": iam.project}
    user = {"name": iam.username, "password": iam.password.get_secret_value(), "domain": {"name": iam.domain}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": {"project": project}}}
    response = http.request("POST", f"{iam.endpoint.rstrip('/')}/v3/auth/tokens", ok=(200, 201), json=body)
    token = response.headers.get("X-Subject-Token")
    if not token:
        raise Permanent(f"{NAME}: IAM answered {response.status_code} without an X-Subject-Token header")
    redact.register(token, expires_at=time.time() + IAM_TOKEN_LIFE)  # IAM tokens never live longer
    expires = parse_time((json_body(response, NAME).get("token") or {}).get("expires_at"))
    return Token(token, expires.timestamp() if expires else time.time() + IAM_TOKEN_LIFE)
