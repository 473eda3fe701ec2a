"""Azure DevOps fork sync requests: POST one on the target fork, then GET it by operationId.

Base URL ``{sandbox}/azure`` (the real one is ``https://dev.azure.com``). A PAT goes as
``Basic base64(":" + PAT)``; a wrong one gets what Azure DevOps really sends a browser-less
client: ``203`` with an HTML sign-in page (``auth_failure: 401`` switches to the JSON 401).
``api-version=7.1`` is required, as on the real service. Status words:
``queued -> inProgress -> completed | failed | abandoned``.

``GET .../git/repositories/{repository}`` answers any name as a fork (``fork: false`` makes every
repository an original) whose ``parentRepository`` carries GUIDs derived from the fork's path:
what a client reads to name the fork's parent in a sync request.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, request

from sandbox.common import ProviderSpec, Refusal, basic_password, check_token, json_body, json_response, state
from sandbox.state import Operation, SandboxState

NAME = "azure-devops"
PREFIX = "/azure"
API_VERSION = "7.1"
blueprint = Blueprint(NAME, __name__, url_prefix=PREFIX)

_REPOSITORY = "/<organization>/<project>/_apis/git/repositories/<repository>"
_BASE = _REPOSITORY + "/forkSyncRequests"
_STEPS = ["Queued", "Fetching refs from the source repository", "Updating refs in the target repository",
          "Completed"]
_TYPE_KEYS = {400: "ArgumentException", 401: "UnauthorizedRequestException",
              404: "GitAsyncOperationNotFoundException", 405: "HttpMethodNotAllowedException",
              415: "UnsupportedMediaTypeException", 429: "RequestBlockedException",
              500: "InternalServerErrorException"}
_NAMESPACE = "Microsoft.VisualStudio.Services.WebApi"
_MESSAGES = {401: "TF400813: The user '' is not authorized to access this resource.",
             429: "TF400733: The request has been throttled: too many requests.",
             500: "TF246017: Azure DevOps Services could not complete the request."}
_SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><title>Azure DevOps Services | Sign In</title>
<meta http-equiv="X-UA-Compatible" content="IE=11;"></head>
<body><p>Sign in to your account to continue to Azure DevOps.</p>
<form method="post" action="https://login.microsoftonline.com/common/oauth2/authorize"></form></body>
</html>
"""


def error(status: int, message: str | None = None, type_key: str | None = None) -> Response:
    """The .NET exception document Azure DevOps answers with (``$id``, ``typeKey``, ...)."""
    type_key = type_key or _TYPE_KEYS.get(status, "VssServiceException")
    return json_response({
        "$id": "1", "innerException": None,
        "message": message or _MESSAGES.get(status, f"The request failed with status {status}."),
        "typeName": f"{_NAMESPACE}.{type_key}, {_NAMESPACE}",
        "typeKey": type_key, "errorCode": 0, "eventId": 3000,
    }, status)


def authenticate(st: SandboxState) -> Response | None:
    if check_token(NAME, basic_password()):
        return None
    if st.settings(NAME)["auth_failure"] == 401:
        raise Refusal(401)
    headers = {"X-VSS-UserData": ":", "X-TFS-ProcessId": "00000000-0000-0000-0000-000000000000"}
    return Response(_SIGN_IN_PAGE, status=203, mimetype="text/html", headers=headers)


SPEC = ProviderSpec(NAME, PREFIX, error, authenticate)


@blueprint.post(_BASE)
def create(organization: str, project: str, repository: str) -> Response:
    _require_version()
    body = json_body()
    source = body.get("source") if isinstance(body, dict) else None
    if not isinstance(source, dict) or not source.get("repositoryId"):
        raise Refusal(400, "Value cannot be null.\r\nParameter name: source.repositoryId",
                      type_key="ArgumentNullException")
    refs = body.get("sourceToTargetRefs")
    if refs is not None and not (isinstance(refs, list) and all(
            isinstance(ref, dict) and ref.get("sourceRef") and ref.get("targetRef") for ref in refs)):
        raise Refusal(400, "sourceToTargetRefs must be a list of {sourceRef, targetRef}")
    st = state()
    op = st.create_operation(NAME, f"{organization}/{project}/{repository}", str(st.serial()),
                             source=source, refs=refs)
    with st.lock:
        return _answer(_request_doc(op))


@blueprint.get(_BASE + "/<int:operation_id>")
def get(organization: str, project: str, repository: str, operation_id: int) -> Response:
    _require_version()
    st = state()
    with st.lock:
        op = st.operation(NAME, str(operation_id))
        if op is None or op.key != f"{organization}/{project}/{repository}":
            raise Refusal(404, f"TF401175: The fork sync request with id {operation_id} could not be found.")
        op.observe(poll=True)
        return _answer(_request_doc(op))


@blueprint.get(_BASE)
def list_requests(organization: str, project: str, repository: str) -> Response:
    """The fork's sync requests in Azure's list envelope (no poll is counted)."""
    _require_version()
    st = state()
    with st.lock:
        docs = [_request_doc(op) for op in st.history(NAME, f"{organization}/{project}/{repository}")]
    return _answer({"count": len(docs), "value": docs})


@blueprint.get(_REPOSITORY)
def repository(organization: str, project: str, repository: str) -> Response:
    """A GitRepository: the fork, with its parent's GitRepositoryRef (collection, project, id)."""
    _require_version()
    path = f"{organization}/{project}/{repository}"
    doc: dict[str, Any] = {"id": _guid("repository", path), "name": repository, "defaultBranch": "refs/heads/main",
                           "project": {"id": _guid("project", f"{organization}/{project}"), "name": project,
                                       "state": "wellFormed"},
                           "url": request.base_url, "isFork": state().settings(NAME)["fork"]}
    if doc["isFork"]:
        doc["parentRepository"] = {
            "id": _guid("parent", path), "name": repository, "isFork": False,
            "project": {"id": _guid("parent-project", path), "name": f"{project}-upstream"},
            "collection": {"id": _guid("collection", organization), "name": organization},
        }
    return _answer(doc)


def _guid(kind: str, path: str) -> str:
    """A GUID that is the same for the same thing on every request (and every sandbox)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:azure-devops:{kind}:{path}"))


def _require_version() -> None:
    """Azure refuses a request without an api-version, or with one this resource does not serve."""
    version = request.args.get("api-version")
    if version is None:
        raise Refusal(400, f'No api-version was supplied for the "{request.method}" request. The version '
                           'must be supplied either as part of the Accept header (e.g. "application/json; '
                           'api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").',
                      type_key="VssVersionNotSpecifiedException")
    if version != API_VERSION:
        raise Refusal(400, f"The requested REST API version of {version} is out of range for this resource. "
                           f"Use api-version={API_VERSION}.", type_key="VssVersionOutOfRangeException")


def _answer(body: dict[str, Any]) -> Response:
    return json_response(body, mimetype=f"application/json; charset=utf-8; api-version={API_VERSION}")


def _request_doc(op: Operation) -> dict[str, Any]:
    """GitForkSyncRequest for the operation's current phase."""
    status = {"queued": "queued", "running": "inProgress"}.get(op.phase) or op.outcome
    step = {"queued": 0, "running": 1}.get(op.phase, len(_STEPS) - 1 if op.succeeded else 2)
    failed = op.phase == "done" and not op.succeeded
    doc: dict[str, Any] = {
        "operationId": int(op.id),
        "status": status,
        "detailedStatus": {"allSteps": _STEPS, "currentStep": step,
                           "errorMessage": (op.error or _failure(op.outcome)) if failed else None},
        "source": op.data["source"],
        "sourceToTargetRefs": op.data["refs"] or [],
    }
    if request.args.get("includeLinks", "").lower() == "true":
        doc["_links"] = {"links": {"self": {"href": request.base_url}}}
    return doc


def _failure(outcome: str) -> str:
    if outcome == "abandoned":
        return "The fork sync operation was abandoned."
    return "TF401028: The fork sync failed: the source repository could not be fetched."
