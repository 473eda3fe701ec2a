"""Azure DevOps fork sync: POST a forkSyncRequest on the target fork, then GET it until it ends.

The PAT goes as ``Basic base64(":" + PAT)``. Azure answers a refused PAT with ``203`` and an
HTML sign-in page rather than a 401: that is an auth failure, so Permanent. Throttling starts
as a ``Retry-After`` header on a 200: it becomes ``Remote.retry_after``, and the next poll waits
at least that long (429 later is Transient, like everywhere).

The source. The request names the fork's parent by three GUIDs, the target's ``source``. Left
out (as a templated target must, each fork having its own parent), they are read once per fork
from the fork itself (``GET .../git/repositories/{repository}``: ``parentRepository``'s
``collection.id``, ``project.id`` and ``id``) and kept for the life of the worker process.

Refs. ``sourceToTargetRefs`` takes exact refs, and a route's globs cannot be sent as refs. When
every branch and tag the route names is an exact name (and each kind is listed, ``[]`` for
none), those refs are sent, ``refs/heads/<name>`` and ``refs/tags/<name>``, each onto itself.
Otherwise (a glob, or a kind the route leaves open) the refs are omitted and Azure syncs every
ref. Sending only the pushed ref instead would be wrong: pushes to several refs of one route
coalesce into one job (DESIGN.md), which keeps only the newest push's ref, so the others would
never be synced. Syncing more than the route names is safe; syncing less is not.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import requests

from bridge.config import AzureDevopsTarget
from workers.providers.base import Http, Permanent, Remote, State, describe_error, json_body, retry_after

NAME = "azure-devops"
API_VERSION = "7.1"
_STATES: dict[str, State] = {"completed": "completed", "failed": "failed", "abandoned": "failed"}
_REF_PREFIXES = {"branches": "refs/heads/", "tags": "refs/tags/"}
_GLOB_CHARS = frozenset("*?[")
PARENTS: dict[tuple[str, str, str, str], dict[str, str]] = {}  # per fork (base, org, project, repository)


def trigger(target: AzureDevopsTarget, job: dict[str, Any], http: Http) -> Remote:
    body: dict[str, Any] = {"source": _source(target, http)}
    refs = _source_to_target_refs(job.get("refs"))
    if refs:
        body["sourceToTargetRefs"] = refs
    return _remote(_request(target, http, "POST", _requests_url(target), json=body))


def poll(target: AzureDevopsTarget, job: dict[str, Any], remote: Remote, http: Http) -> Remote:
    return _remote(_request(target, http, "GET", f"{_requests_url(target)}/{remote.id}"))


def check(target: AzureDevopsTarget, http: Http) -> None:
    """List the fork's sync requests (and read its parent when ``source`` is left out): read-only."""
    _request(target, http, "GET", _requests_url(target))
    _source(target, http)


def _source(target: AzureDevopsTarget, http: Http) -> dict[str, str]:
    """The fork's parent, as the sync request names it: the target's ``source``, or read from the fork.

    A fork's parent never changes, so what the fork says is kept for the life of the process: a
    templated target asks once per fork, not once per sync.
    """
    if target.source is not None:
        source = target.source
        return {"collectionId": source.collection_id, "projectId": source.project_id,
                "repositoryId": source.repository_id}
    fork = (target.base_url, target.organization, target.project, target.repository)
    if fork not in PARENTS:
        repository = json_body(_request(target, http, "GET", _repository_url(target)), NAME)
        parent = repository.get("parentRepository") if isinstance(repository, dict) else None
        ids = _parent_ids(parent if isinstance(parent, dict) else {})
        if ids is None:
            raise Permanent(f"{NAME}: {target.project}/{target.repository} is not a fork (Azure DevOps names no "
                            "parent repository with its collection and project), so there is nothing to sync it "
                            "from: point `repository` at a fork, or give `source`")
        PARENTS[fork] = ids
    return PARENTS[fork]


def _parent_ids(parent: dict[str, Any]) -> dict[str, str] | None:
    """A GitRepositoryRef's three GUIDs, or None when one is missing."""
    ids = {"collectionId": (parent.get("collection") or {}).get("id"),
           "projectId": (parent.get("project") or {}).get("id"), "repositoryId": parent.get("id")}
    return ids if all(isinstance(value, str) and value for value in ids.values()) else None


def _repository_url(target: AzureDevopsTarget) -> str:
    return f"{target.base_url}/{target.organization}/{target.project}/_apis/git/repositories/{target.repository}"


def _requests_url(target: AzureDevopsTarget) -> str:
    return f"{_repository_url(target)}/forkSyncRequests"


def _request(target: AzureDevopsTarget, http: Http, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Every Azure call: the PAT as Basic, ``api-version``, and a sign-in page taken for what it is."""
    pat = base64.b64encode(f":{target.token.get_secret_value()}".encode()).decode()
    response = http.request(method, url, ok=(200, 201, 203), params={"api-version": API_VERSION},
                            headers={"Authorization": f"Basic {pat}"}, **kwargs)
    if response.status_code == 203:
        raise Permanent(f"{NAME} answered 203 to {method} {urlsplit(url).path}: the personal access token was "
                        f"refused ({describe_error(response)})")
    return response


def _remote(response: requests.Response) -> Remote:
    """A GitForkSyncRequest: ``completed`` ends it, ``failed`` and ``abandoned`` fail it with Azure's reason."""
    sync = json_body(response, NAME)
    status = str(sync.get("status", ""))
    state = _STATES.get(status, "running")
    detailed = sync.get("detailedStatus") or {}
    steps, step = detailed.get("allSteps") or [], detailed.get("currentStep")
    details = {"step": steps[step] if isinstance(step, int) and 0 <= step < len(steps) else None,
               "refs": [ref.get("targetRef") for ref in sync.get("sourceToTargetRefs") or []] or "all"}
    error = (detailed.get("errorMessage") or f"Azure DevOps reports the fork sync {status}") \
        if state == "failed" else None
    return Remote(id=str(sync["operationId"]), status=status, state=state, error=error, details=details,
                  retry_after=retry_after(response))


def _source_to_target_refs(refs: dict[str, list[str] | None] | None) -> list[dict[str, str]] | None:
    """The route's refs as Azure mappings, or None (sync every ref) when the route cannot be listed exactly."""
    if refs is None:
        return None
    names = []
    for kind, prefix in _REF_PREFIXES.items():
        globs = refs.get(kind)
        if globs is None or any(_GLOB_CHARS & set(glob) for glob in globs):
            return None
        names += [prefix + glob for glob in globs]
    return [{"sourceRef": name, "targetRef": name} for name in names] or None
