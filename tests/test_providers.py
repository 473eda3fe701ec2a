"""Contract tests of the six mirror providers: a real RQ worker, the sandbox over real HTTP.

Each test writes a config with one target on the sandbox, posts a signed GitHub push through
the app, drives the worker (``drive`` records waits instead of sleeping them) and asserts on the
job record and on the requests the sandbox saw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from redis import Redis

from bridge.app import create_app
from bridge.config import Config
from tests.conftest import SECRET, TOKEN, sandbox_calls
from tests.driver import drive
from tests.test_worker_mesa import faults, job, push, settings
from workers.providers import PROVIDERS, codearts, google_csr
from workers.providers.base import Http, Permanent

WRONG = "not-the-sandbox-token"
IAM = {"username": "sandbox-user", "password": "sandbox-password", "domain": "acme", "project": "cn-north-4"}
AZURE_SOURCE = {"collection_id": "c0c0c0c0-0000-0000-0000-000000000001",
                "project_id": "p0p0p0p0-0000-0000-0000-000000000002",
                "repository_id": "r0r0r0r0-0000-0000-0000-000000000003"}
# Per provider: where it lives in the sandbox, and the target fields besides provider and base_url.
TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "google-csr": ("/google", {"repo": "projects/acme/repos/widgets", "token": TOKEN}),
    "bitbucket-dc": ("/bitbucket", {"project": "ACME", "repo": "widgets", "token": TOKEN}),
    "azure-devops": ("/azure", {"organization": "acme", "project": "widgets", "repository": "widgets-fork",
                                "source": AZURE_SOURCE, "token": TOKEN}),
    "codearts": ("/codearts", {"repository_id": 123, "token": TOKEN}),
    "gitlab-mirror": ("/gitlab", {"project": "acme/widgets", "token": TOKEN}),
    "gitea-mirror": ("/gitea", {"repo": "acme/widgets", "token": TOKEN}),
}
NAMES = list(TARGETS)


def provider_config(sandbox_url: str, provider: str, route: dict[str, Any] | None = None, **fields: Any) -> str:
    """A GitHub source routed to one target of ``provider`` on the sandbox; a field given as None is dropped.

    JSON is YAML, so the config is written as JSON. ``min_interval: 0``: no spacing between syncs.
    """
    prefix, defaults = TARGETS[provider]
    target = {"provider": provider, "base_url": sandbox_url + prefix, "min_interval": 0, **defaults, **fields}
    return json.dumps({
        "sources": {"github": {"kind": "github", "secret": SECRET}},
        "targets": {"widgets": {key: value for key, value in target.items() if value is not None}},
        "routes": [{"source": "github", "repo": "acme/widgets", "targets": ["widgets"], **(route or {})}],
    })


@pytest.fixture(autouse=True)
def _fresh_token_caches() -> Iterator[None]:
    """Minted tokens live per process; each test starts with none."""
    for module in (google_csr, codearts):
        module.TOKENS.tokens.clear()
    yield


@pytest.fixture
def setup(write_config: Callable[[str], Config], redis: Redis, sandbox: Any) -> Callable[..., FlaskClient]:
    def make(provider: str, route: dict[str, Any] | None = None, **fields: Any) -> FlaskClient:
        config = write_config(provider_config(sandbox.url, provider, route, **fields))
        return create_app(config, redis).test_client()
    return make


@pytest.fixture
def target(write_config: Callable[[str], Config], sandbox: Any) -> Callable[..., Any]:
    """The loaded target model, for calling a provider module directly (``check``)."""
    def make(provider: str, **fields: Any) -> Any:
        return write_config(provider_config(sandbox.url, provider, **fields)).targets["widgets"]
    return make


def sync(client: FlaskClient, redis: Redis, delivery: str = "d-1") -> tuple[dict[str, Any], list[int]]:
    """Push, drive the worker until idle, and return the job record and the waits it asked for."""
    job_id = push(client, delivery=delivery)
    intervals = drive(redis)
    return job(client, job_id), intervals


def request_of(call: dict[str, Any]) -> tuple[str, str, dict[str, str], Any]:
    """What a contract fixes about a request: method, raw path, query and JSON body."""
    return call["method"], call["path"], call["query"], call["json"]


@pytest.fixture(scope="module")
def service_account_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def credentials_file(tmp_path: Path, sandbox: Any, service_account_key: str) -> str:
    """A service-account file whose ``token_uri`` is the sandbox's OAuth token endpoint."""
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "acme", "private_key_id": "key-1",
        "private_key": service_account_key, "client_email": "syncbridge@acme.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": f"{sandbox.url}/google/token",
    }))
    return str(path)


# --- what every provider does the same way ------------------------------------------------------


TERMINAL = [
    # provider, sandbox outcome, job status, remote.status
    ("google-csr", "completed", "completed", "done"),
    ("google-csr", "failed", "failed", "done"),
    ("bitbucket-dc", "completed", "completed", "synced"),
    ("bitbucket-dc", "failed", "failed", None),  # enabling is refused (409): nothing to follow
    ("azure-devops", "completed", "completed", "completed"),
    ("azure-devops", "failed", "failed", "failed"),
    ("azure-devops", "abandoned", "failed", "abandoned"),
    ("codearts", "completed", "completed", "finished"),
    ("codearts", "failed", "failed", "failed"),
    ("gitlab-mirror", "completed", "completed", "finished"),
    ("gitlab-mirror", "failed", "failed", "failed"),
    ("gitlab-mirror", "canceled", "failed", "canceled"),
    ("gitea-mirror", "completed", "completed", "updated"),  # gitea's only failure is the timeout, below
]


@pytest.mark.parametrize(("provider", "outcome", "status", "remote_status"), TERMINAL)
def test_every_terminal_state_maps_to_the_jobs_status(setup, redis: Redis, sandbox: Any, provider: str,
                                                      outcome: str, status: str, remote_status: str | None) -> None:
    client = setup(provider)
    settings(sandbox, provider, polls=2, outcome=outcome, error="upstream said no" if outcome != "completed" else None)
    record, _ = sync(client, redis)
    assert record["status"] == status, record
    assert (record["remote"] or {}).get("status") == remote_status
    if status == "failed":
        assert "upstream said no" in record["error"]
    else:
        assert record["error"] is None


@pytest.mark.parametrize("provider", ["codearts", "gitea-mirror"])
def test_a_sync_that_never_ends_fails_at_the_targets_timeout(setup, redis: Redis, sandbox: Any,
                                                             provider: str) -> None:
    client = setup(provider, timeout=1)
    settings(sandbox, provider, polls=1000)
    job_id = push(client)
    drive(redis, max_rounds=1, until_idle=False)  # triggered; the job's clock runs
    redis.hset(f"syncbridge:job:{job_id}", "started_at", "2000-01-01T00:00:00.000Z")
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "failed" and "gave up after 1s" in record["error"], record


@pytest.mark.parametrize("provider", NAMES)
def test_5xx_and_429_are_retried_and_retry_after_is_honoured(setup, redis: Redis, sandbox: Any,
                                                             provider: str) -> None:
    client = setup(provider)
    settings(sandbox, provider, polls=1)
    faults(sandbox, provider, {"status": 500}, {"status": 429, "retry_after": 7})
    record, intervals = sync(client, redis)
    assert record["status"] == "completed", record
    assert record["attempts"] == 3
    assert intervals[:2] == [1, 7]  # backoff 1 s after the 500, then at least the Retry-After


@pytest.mark.parametrize("status", [401, 403, 404])
@pytest.mark.parametrize("provider", NAMES)
def test_client_errors_fail_at_once_with_the_providers_own_message(setup, redis: Redis, sandbox: Any,
                                                                   provider: str, status: int) -> None:
    client = setup(provider)
    faults(sandbox, provider, {"status": status, "message": f"refused by the sandbox ({status})"})
    record, intervals = sync(client, redis)
    assert record["status"] == "failed" and intervals == []
    assert f"{provider} answered {status} to " in record["error"]
    assert f"refused by the sandbox ({status})" in record["error"]  # read from the provider's error shape
    assert TOKEN not in record["error"]
    assert len(sandbox_calls(sandbox, provider)) == 1


@pytest.mark.parametrize("provider", NAMES)
def test_a_wrong_token_is_one_call_and_never_shown(setup, redis: Redis, sandbox: Any, provider: str) -> None:
    client = setup(provider, token=WRONG)
    record, intervals = sync(client, redis)
    assert record["status"] == "failed" and intervals == [], record
    assert WRONG not in record["error"]
    assert len(sandbox_calls(sandbox, provider)) == 1


@pytest.mark.parametrize("provider", NAMES)
def test_check_is_one_authenticated_read(target, sandbox: Any, provider: str) -> None:
    model = target(provider)
    PROVIDERS[provider].check(model, Http(model, provider))
    calls = sandbox_calls(sandbox, provider)
    assert [call["method"] for call in calls] == ["GET"] and calls[0]["status"] == 200
    assert not [op for op in _operations(sandbox, provider)]  # nothing was synced


@pytest.mark.parametrize("provider", NAMES)
def test_check_reports_a_refused_credential(target, provider: str) -> None:
    model = target(provider, token=WRONG)
    with pytest.raises(Permanent) as refused:
        PROVIDERS[provider].check(model, Http(model, provider))
    assert WRONG not in refused.value.reason


def _operations(sandbox: Any, provider: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{sandbox.url}/_sandbox/operations", params={"provider": provider}, timeout=5)
    return answer.json()["operations"]


# --- Google Cloud Source Repositories -----------------------------------------------------------


def test_google_syncs_with_an_empty_body_and_polls_the_operation(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("google-csr")
    settings(sandbox, "google-csr", polls=1)
    record, intervals = sync(client, redis)
    assert record["status"] == "completed" and intervals == [1]
    operation = record["remote"]["id"]
    assert operation.startswith("operations/")
    trigger, poll = sandbox_calls(sandbox, "google-csr")
    assert request_of(trigger) == ("POST", "/google/v1/projects/acme/repos/widgets:sync", {}, None)
    assert trigger["body"] == ""
    assert request_of(poll) == ("GET", f"/google/v1/{operation}", {}, None)
    assert trigger["headers"]["Authorization"] == poll["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert record["remote"]["statusMessage"] == "Sync complete"


@pytest.mark.parametrize("answer", [404, 405, 501])
def test_google_operation_that_cannot_be_polled_ends_completed_unconfirmed(setup, redis: Redis, sandbox: Any,
                                                                           answer: int) -> None:
    client = setup("google-csr")
    settings(sandbox, "google-csr", pollable=False, unpollable_status=answer)
    record, _ = sync(client, redis)
    assert record["status"] == "completed", record
    assert record["remote"]["confirmed"] is False and str(answer) in record["remote"]["unconfirmed"]
    assert len(sandbox_calls(sandbox, "google-csr")) == 2


def test_google_service_account_token_is_minted_once_and_renewed_before_expiry(
        setup, redis: Redis, sandbox: Any, credentials_file: str) -> None:
    client = setup("google-csr", token=None, credentials_file=credentials_file)
    settings(sandbox, "google-csr", polls=1)
    assert sync(client, redis, "d-1")[0]["status"] == "completed"
    assert sync(client, redis, "d-2")[0]["status"] == "completed"
    calls = sandbox_calls(sandbox, "google-csr")
    mints = [call for call in calls if call["path"] == "/google/token"]
    assert len(mints) == 1 and len(calls) == 5
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in mints[0]["body"]
    bearer = {call["headers"]["Authorization"] for call in calls if call not in mints}
    assert len(bearer) == 1 and bearer.pop().startswith("Bearer ya29.sandbox-")

    [token] = google_csr.TOKENS.tokens.values()
    token.expires_at = time.time() + 60  # inside the renewal margin: renewed before it lapses
    assert sync(client, redis, "d-3")[0]["status"] == "completed"
    assert len([call for call in sandbox_calls(sandbox, "google-csr") if call["path"] == "/google/token"]) == 2


@pytest.mark.parametrize(("answer", "status"), [(503, "completed"), (400, "failed")])
def test_google_token_endpoint_errors_are_classified_like_any_answer(setup, redis: Redis, sandbox: Any,
                                                                     credentials_file: str, answer: int,
                                                                     status: str) -> None:
    client = setup("google-csr", token=None, credentials_file=credentials_file)
    settings(sandbox, "google-csr", polls=1)
    faults(sandbox, "google-csr", {"status": answer, "message": "Invalid JWT Signature."})
    record, intervals = sync(client, redis)
    assert record["status"] == status, record
    if status == "failed":  # one call, the token endpoint's own reason
        assert record["error"] == "google-csr answered 400 to POST /google/token: Invalid JWT Signature."
        assert len(sandbox_calls(sandbox, "google-csr")) == 1
    else:  # retried by the job after 1 s, not by google-auth sleeping in the worker
        assert intervals[0] == 1 and record["attempts"] == 2


def test_google_unusable_service_account_file_fails_with_a_reason(setup, redis: Redis, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    client = setup("google-csr", token=None, credentials_file=str(broken))
    record, _ = sync(client, redis)
    assert record["status"] == "failed" and "cannot use the service-account file" in record["error"]


# --- Bitbucket Data Center ----------------------------------------------------------------------


def test_bitbucket_enables_sync_and_completes_in_the_trigger(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("bitbucket-dc")
    settings(sandbox, "bitbucket-dc", ahead_refs=["refs/heads/main"], orphaned_refs=["refs/heads/old"])
    record, intervals = sync(client, redis)
    assert record["status"] == "completed" and intervals == []
    base = "/bitbucket/rest/sync/latest/projects/ACME/repos/widgets"
    calls = sandbox_calls(sandbox, "bitbucket-dc")
    assert [request_of(call) for call in calls] == [("GET", base, {}, None),
                                                    ("POST", base, {}, {"enabled": True})]
    assert all(call["headers"]["Authorization"] == f"Bearer {TOKEN}" for call in calls)
    remote = record["remote"]
    assert remote["status"] == "synced" and remote["lastSync"].endswith("Z")
    assert (remote["ahead"], remote["diverged"], remote["orphaned"]) == (["refs/heads/main"], [], ["refs/heads/old"])
    assert remote["warnings"] == ["orphaned refs left as they are: refs/heads/old"]


def test_bitbucket_reenables_when_enabling_an_enabled_repo_did_not_sync(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("bitbucket-dc")
    assert sync(client, redis, "d-1")[0]["status"] == "completed"
    settings(sandbox, "bitbucket-dc", resync_enabled=False)
    record, _ = sync(client, redis, "d-2")
    assert record["status"] == "completed" and "unconfirmed" in record["remote"]
    bodies = [(call["method"], call["json"]) for call in sandbox_calls(sandbox, "bitbucket-dc")[2:]]
    assert bodies == [("GET", None), ("POST", {"enabled": True}), ("POST", {"enabled": False}),
                      ("POST", {"enabled": True})]
    assert len(_operations(sandbox, "bitbucket-dc")) == 2  # the cycle synced


def test_bitbucket_reports_diverged_refs_by_default(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("bitbucket-dc")
    settings(sandbox, "bitbucket-dc", diverged_refs=["refs/heads/feature"])
    record, _ = sync(client, redis)
    assert record["status"] == "completed" and record["remote"]["diverged"] == ["refs/heads/feature"]
    assert record["remote"]["warnings"] == ["diverged refs left as they are: refs/heads/feature"]
    assert not [call for call in sandbox_calls(sandbox, "bitbucket-dc") if call["path"].endswith("/synchronize")]


@pytest.mark.parametrize(("on_diverged", "answer", "result", "left"), [
    ("merge", 204, "in sync", []),
    ("merge", 200, "ahead", []),
    ("discard", 204, "in sync", []),
    ("discard", 409, "not applied: ", ["refs/heads/feature"]),
])
def test_bitbucket_merges_or_discards_diverged_refs(setup, redis: Redis, sandbox: Any, on_diverged: str,
                                                    answer: int, result: str, left: list[str]) -> None:
    client = setup("bitbucket-dc", on_diverged=on_diverged)
    settings(sandbox, "bitbucket-dc", diverged_refs=["refs/heads/feature"], synchronize=answer)
    record, _ = sync(client, redis)
    assert record["status"] == "completed", record
    action = on_diverged.upper()
    [done] = record["remote"]["synchronized"]
    assert done["ref"] == "refs/heads/feature" and done["action"] == action and done["result"].startswith(result)
    assert record["remote"]["diverged"] == left
    [call] = [call for call in sandbox_calls(sandbox, "bitbucket-dc") if call["path"].endswith("/synchronize")]
    expected = {"refId": "refs/heads/feature", "action": action}
    if action == "MERGE":
        expected["context"] = {"commitMessage": "Merge upstream changes (syncbridge)"}
    assert call["json"] == expected


# --- Azure DevOps -------------------------------------------------------------------------------


def test_azure_fork_sync_request_and_poll(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("azure-devops", route={"branches": ["main", "release/1.x"], "tags": []})
    settings(sandbox, "azure-devops", polls=2)
    record, intervals = sync(client, redis)
    assert record["status"] == "completed" and intervals == [1, 1]
    base = "/azure/acme/widgets/_apis/git/repositories/widgets-fork/forkSyncRequests"
    refs = [{"sourceRef": ref, "targetRef": ref} for ref in ("refs/heads/main", "refs/heads/release/1.x")]
    calls = sandbox_calls(sandbox, "azure-devops")
    assert request_of(calls[0]) == ("POST", base, {"api-version": "7.1"}, {
        "source": {"collectionId": AZURE_SOURCE["collection_id"], "projectId": AZURE_SOURCE["project_id"],
                   "repositoryId": AZURE_SOURCE["repository_id"]},
        "sourceToTargetRefs": refs})
    assert request_of(calls[1]) == ("GET", f"{base}/{record['remote']['id']}", {"api-version": "7.1"}, None)
    assert all(call["headers"]["Authorization"] == "Basic OnNhbmRib3gtdG9rZW4=" for call in calls)  # ":" + PAT
    assert record["remote"]["refs"] == ["refs/heads/main", "refs/heads/release/1.x"]


@pytest.mark.parametrize("route", [{"branches": ["main", "release/*"], "tags": []}, {"branches": ["main"]}, {}])
def test_azure_syncs_every_ref_when_the_route_has_globs_or_open_kinds(setup, redis: Redis, sandbox: Any,
                                                                      route: dict[str, Any]) -> None:
    client = setup("azure-devops", route=route)
    record, _ = sync(client, redis)
    assert "sourceToTargetRefs" not in sandbox_calls(sandbox, "azure-devops")[0]["json"]
    assert record["remote"]["refs"] == "all"


def test_azure_sign_in_page_is_an_auth_failure(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("azure-devops", token=WRONG)
    record, _ = sync(client, redis)
    assert record["status"] == "failed"
    assert "answered 203 to POST /azure/acme/widgets/_apis/git/repositories/widgets-fork/forkSyncRequests: " \
           "the personal access token was refused" in record["error"] and "Sign In" in record["error"]
    assert sandbox_calls(sandbox, "azure-devops")[0]["status"] == 203


def test_azure_retry_after_on_a_200_slows_the_next_poll(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("azure-devops")
    settings(sandbox, "azure-devops", polls=2)
    faults(sandbox, "azure-devops", {"status": 200, "retry_after": 9})
    record, intervals = sync(client, redis)
    assert record["status"] == "completed"
    assert intervals == [9, 1]


# --- Huawei Cloud CodeArts Repo -----------------------------------------------------------------


def test_codearts_remote_mirror_trigger_and_status(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("codearts", force_fetch=True, endpoint_uuid="endpoint-1")
    settings(sandbox, "codearts", polls=2)
    record, _ = sync(client, redis)
    assert record["status"] == "completed", record
    path = "/codearts/v4/repositories/123/remote-mirror"
    calls = sandbox_calls(sandbox, "codearts")
    assert [request_of(call) for call in calls] == [
        ("POST", path, {}, {"force_fetch": True, "endpoint_uuid": "endpoint-1"}),
        ("GET", path, {}, None), ("GET", path, {}, None)]
    assert all(call["headers"]["X-Auth-Token"] == TOKEN for call in calls)
    remote = record["remote"]
    assert remote["id"] and remote["status"] == "finished" and remote["last_update_at"] >= remote["triggered_at"]
    assert "unconfirmed" in remote


def test_codearts_iam_token_is_minted_once_and_renewed_when_it_expires(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("codearts", token=None, iam={**IAM, "endpoint": f"{sandbox.url}/codearts/iam"})
    settings(sandbox, "codearts", polls=1)
    assert sync(client, redis, "d-1")[0]["status"] == "completed"
    assert sync(client, redis, "d-2")[0]["status"] == "completed"
    calls = sandbox_calls(sandbox, "codearts")
    mints = [call for call in calls if call["path"] == "/codearts/iam/v3/auth/tokens"]
    assert len(mints) == 1 and len(calls) == 5
    assert mints[0]["json"] == {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "sandbox-user", "password": "sandbox-password", "domain": {"name": "acme"}}}},
        "scope": {"project": {"name": "cn-north-4"}}}}
    tokens = {call["headers"]["X-Auth-Token"] for call in calls if call not in mints}
    assert len(tokens) == 1 and tokens.pop().startswith("MIIsandbox-")

    [token] = codearts.TOKENS.tokens.values()
    assert token.expires_at > time.time() + 23 * 3600  # IAM's expires_at: a day
    token.expires_at = time.time() - 1
    record, _ = sync(client, redis, "d-3")
    assert record["status"] == "completed"
    assert len([call for call in sandbox_calls(sandbox, "codearts") if "/iam/" in call["path"]]) == 2


def test_codearts_refused_iam_token_is_dropped_and_minted_anew(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("codearts", token=None, iam={**IAM, "endpoint": f"{sandbox.url}/codearts/iam"})
    settings(sandbox, "codearts", polls=1)
    faults(sandbox, "codearts", {"status": 200}, {"status": 401})  # the token is minted, then refused
    assert sync(client, redis, "d-1")[0]["status"] == "failed"
    assert codearts.TOKENS.tokens == {}
    assert sync(client, redis, "d-2")[0]["status"] == "completed"
    assert len([call for call in sandbox_calls(sandbox, "codearts") if "/iam/" in call["path"]]) == 2


def test_codearts_wrong_iam_password_fails_at_once(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("codearts", token=None, iam={**IAM, "password": "wrong-password",
                                                "endpoint": f"{sandbox.url}/codearts/iam"})
    record, _ = sync(client, redis)
    assert record["status"] == "failed" and "The username or password is wrong" in record["error"]
    assert "wrong-password" not in record["error"]
    assert len(sandbox_calls(sandbox, "codearts")) == 1


# --- GitLab pull mirror -------------------------------------------------------------------------


def test_gitlab_pull_is_asked_for_and_followed(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("gitlab-mirror")
    settings(sandbox, "gitlab-mirror", polls=2)
    record, _ = sync(client, redis)
    assert record["status"] == "completed", record
    path = "/gitlab/api/v4/projects/acme%2Fwidgets/mirror/pull"  # the project path, URL-encoded
    calls = sandbox_calls(sandbox, "gitlab-mirror")
    assert [request_of(call) for call in calls] == [("POST", path, {}, None), ("GET", path, {}, None),
                                                    ("GET", path, {}, None)]
    assert all(call["headers"]["Private-Token"] == TOKEN for call in calls)
    remote = record["remote"]
    assert remote["status"] == "finished" and remote["last_update_started_at"] >= remote["triggered_at"]
    assert "skipped" not in remote


def test_gitlab_skipped_pull_is_complete_when_the_last_pull_began_after_the_push(setup, redis: Redis,
                                                                                 sandbox: Any) -> None:
    client = setup("gitlab-mirror")
    settings(sandbox, "gitlab-mirror", polls=1, min_interval=300)
    job_id = push(client)
    pull = f"{sandbox.url}/gitlab/api/v4/projects/acme%2Fwidgets/mirror/pull"  # GitLab's own schedule pulls first
    requests.post(pull, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5).raise_for_status()
    requests.get(pull, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5).raise_for_status()
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "completed", record
    assert "after the push, brought it in" in record["remote"]["skipped"]
    assert len(_operations(sandbox, "gitlab-mirror")) == 1  # that one pull served the push


def test_gitlab_skipped_pull_is_asked_again_after_the_interval(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("gitlab-mirror")
    settings(sandbox, "gitlab-mirror", polls=1, min_interval=300)
    assert sync(client, redis, "d-1")[0]["status"] == "completed"
    job_id = push(client, delivery="d-2")
    intervals = drive(redis, max_rounds=2, until_idle=False)  # trigger, then the poll that sees the skip
    assert 295 <= intervals[-1] <= 300  # waits out GitLab's interval instead of hanging on a pull that won't come
    record = job(client, job_id)
    assert record["status"] == "in_progress" and "before the push: asking again at" in record["remote"]["skipped"]
    settings(sandbox, "gitlab-mirror", min_interval=0)  # the interval has passed
    drive(redis)
    record = job(client, job_id)
    assert record["status"] == "completed" and "pull_again_at" not in record["remote"], record
    assert [call["method"] for call in sandbox_calls(sandbox, "gitlab-mirror")[2:]] == ["POST", "GET", "POST", "GET"]
    assert len(_operations(sandbox, "gitlab-mirror")) == 2


# --- Gitea / Forgejo pull mirror ----------------------------------------------------------------


def test_gitea_reads_mirror_updated_triggers_and_waits_for_it_to_move(setup, redis: Redis, sandbox: Any) -> None:
    client = setup("gitea-mirror")
    settings(sandbox, "gitea-mirror", polls=2)
    record, _ = sync(client, redis)
    assert record["status"] == "completed", record
    repo = "/gitea/api/v1/repos/acme/widgets"
    calls = sandbox_calls(sandbox, "gitea-mirror")
    assert [request_of(call) for call in calls] == [("GET", repo, {}, None), ("POST", f"{repo}/mirror-sync", {}, None),
                                                    ("GET", repo, {}, None), ("GET", repo, {}, None)]
    assert all(call["headers"]["Authorization"] == f"token {TOKEN}" for call in calls)
    remote = record["remote"]
    assert remote["status"] == "updated" and remote["mirror_updated"] > remote["mirror_updated_before"]
