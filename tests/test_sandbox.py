"""The provider sandbox on its own, over real HTTP: contracts, progress, faults, admin API, token minting.

One ``SandboxServer`` serves the module; every test starts from ``DELETE /_sandbox/settings``.
Each provider gets a small driver (how to trigger, poll and read its status word), so the
behaviours every provider shares are tested once, parametrized over all seven.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest
import requests

from sandbox.app import create_app
from sandbox.server import SandboxServer
from sandbox.state import PROVIDERS

TOKEN = "sandbox-token"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture
def http(server: SandboxServer) -> Iterator[requests.Session]:
    session = requests.Session()
    assert session.delete(f"{server.url}/_sandbox/settings").status_code == 200
    yield session
    session.close()


def configure(server: SandboxServer, provider: str, **settings: Any) -> None:
    answer = requests.put(f"{server.url}/_sandbox/settings/{provider}", json=settings)
    assert answer.status_code == 200, answer.text


def inject(server: SandboxServer, provider: str, *responses: dict[str, Any], **document: Any) -> None:
    document = {"responses": list(responses), **document}
    answer = requests.post(f"{server.url}/_sandbox/faults/{provider}", json=document)
    assert answer.status_code == 200, answer.text


def calls(server: SandboxServer, provider: str) -> list[dict[str, Any]]:
    return requests.get(f"{server.url}/_sandbox/calls", params={"provider": provider}).json()["calls"]


# -- one driver per provider -------------------------------------------------------------------


class Driver:
    """How a client talks to one provider; subclasses fill in the provider's own paths and words."""

    name: ClassVar[str]
    auth: ClassVar[dict[str, str]]
    bad_auth: ClassVar[dict[str, str]]
    rejected_status: ClassVar[int] = 401

    def __init__(self, server: SandboxServer, http: requests.Session):
        self.base = server.base_url(self.name)
        self.http = http

    def prepare(self) -> None:
        """Anything to read before triggering (Gitea: the ``mirror_updated`` to compare with)."""

    def trigger(self, **kwargs: Any) -> requests.Response:
        raise NotImplementedError

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        raise NotImplementedError

    def word(self, answer: requests.Response) -> str:
        """The provider's own status word in a trigger or poll answer."""
        raise NotImplementedError

    def error_message(self, answer: requests.Response) -> str:
        """Asserts the provider's error shape and returns its message."""
        raise NotImplementedError

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any):
        return self.http.request(method, self.base + path, headers=self.auth if headers is None else headers,
                                 **kwargs)


class Mesa(Driver):
    name = "mesa"
    auth: ClassVar = {"Authorization": f"Bearer {TOKEN}"}
    bad_auth: ClassVar = {"Authorization": "Bearer wrong"}

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", "/acme/widgets/upstream/syncs", json={"direction": "pull"}, **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", f"/acme/widgets/upstream/syncs/{triggered.json()['id']}", **kwargs)

    def word(self, answer: requests.Response) -> str:
        return answer.json()["status"]

    def error_message(self, answer: requests.Response) -> str:
        error = answer.json()["error"]
        assert {"code", "message", "details"} <= set(error)
        assert ("trace_id" in error) == (answer.status_code >= 500)
        return error["message"]


class Google(Driver):
    name = "google-csr"
    auth: ClassVar = {"Authorization": f"Bearer {TOKEN}"}
    bad_auth: ClassVar = {"Authorization": "Bearer wrong"}

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", "/v1/projects/acme/repos/widgets:sync", **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", f"/v1/{triggered.json()['name']}", **kwargs)

    def word(self, answer: requests.Response) -> str:
        body = answer.json()
        if not body["done"]:
            return "running"
        assert ("error" in body) != ("response" in body)
        return "failed" if "error" in body else "completed"

    def error_message(self, answer: requests.Response) -> str:
        error = answer.json()["error"]
        assert error["code"] == answer.status_code and isinstance(error["status"], str)
        return error["message"]


class Bitbucket(Driver):
    name = "bitbucket-dc"
    auth: ClassVar = {"Authorization": f"Bearer {TOKEN}"}
    bad_auth: ClassVar = {"Authorization": "Bearer wrong"}
    path = "/rest/sync/latest/projects/ACME/repos/widgets"

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.path, json={"enabled": True}, **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", self.path, **kwargs)

    def word(self, answer: requests.Response) -> str:
        return "synced" if "lastSync" in answer.json() else "never"

    def error_message(self, answer: requests.Response) -> str:
        (error,) = answer.json()["errors"]
        assert set(error) == {"context", "message", "exceptionName"}
        return error["message"]


class Azure(Driver):
    name = "azure-devops"
    auth: ClassVar = {"Authorization": "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()}
    bad_auth: ClassVar = {"Authorization": "Basic " + base64.b64encode(b":wrong").decode()}
    rejected_status = 203
    path = "/acme/proj/_apis/git/repositories/widgets/forkSyncRequests"
    source: ClassVar = {"collectionId": "c0ffee00-0000-0000-0000-000000000001",
                        "projectId": "c0ffee00-0000-0000-0000-000000000002",
                        "repositoryId": "c0ffee00-0000-0000-0000-000000000003"}

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.path + "?api-version=7.1", json={"source": self.source}, **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", f"{self.path}/{triggered.json()['operationId']}?api-version=7.1", **kwargs)

    def word(self, answer: requests.Response) -> str:
        return answer.json()["status"]

    def error_message(self, answer: requests.Response) -> str:
        body = answer.json()
        assert set(body) == {"$id", "innerException", "message", "typeName", "typeKey", "errorCode",
                             "eventId"}
        return body["message"]


class CodeArts(Driver):
    name = "codearts"
    auth: ClassVar = {"X-Auth-Token": TOKEN}
    bad_auth: ClassVar = {"X-Auth-Token": "wrong"}
    path = "/v4/repositories/123/remote-mirror"

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.path, **{"json": {}, **kwargs})

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", self.path, **kwargs)

    def word(self, answer: requests.Response) -> str:
        return answer.json().get("update_status", "-")

    def error_message(self, answer: requests.Response) -> str:
        body = answer.json()
        assert set(body) == {"error_code", "error_msg"}
        return body["error_msg"]


class GitLab(Driver):
    name = "gitlab-mirror"
    auth: ClassVar = {"PRIVATE-TOKEN": TOKEN}
    bad_auth: ClassVar = {"PRIVATE-TOKEN": "wrong"}
    path = "/api/v4/projects/acme%2Fwidgets/mirror/pull"

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.path, **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", self.path, **kwargs)

    def word(self, answer: requests.Response) -> str:
        return answer.json()["update_status"] if answer.content else "-"

    def error_message(self, answer: requests.Response) -> str:
        body = answer.json()
        assert set(body) == {"message"}
        return body["message"]


class Gitea(Driver):
    name = "gitea-mirror"
    auth: ClassVar = {"Authorization": f"token {TOKEN}"}
    bad_auth: ClassVar = {"Authorization": "token wrong"}
    path = "/api/v1/repos/acme/widgets"
    before: str | None = None

    def prepare(self) -> None:
        self.before = self.request("GET", self.path).json()["mirror_updated"]

    def trigger(self, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.path + "/mirror-sync", **kwargs)

    def poll(self, triggered: requests.Response, **kwargs: Any) -> requests.Response:
        return self.request("GET", self.path, **kwargs)

    def word(self, answer: requests.Response) -> str:
        if not answer.content:
            return "-"
        return "moved" if answer.json()["mirror_updated"] != self.before else "unchanged"

    def error_message(self, answer: requests.Response) -> str:
        body = answer.json()
        assert set(body) == {"message", "url"}
        return body["message"]


DRIVERS: dict[str, type[Driver]] = {
    driver.name: driver for driver in (Mesa, Google, Bitbucket, Azure, CodeArts, GitLab, Gitea)
}


@pytest.fixture(params=list(DRIVERS))
def driver(request: pytest.FixtureRequest, server: SandboxServer, http: requests.Session) -> Driver:
    return DRIVERS[request.param](server, http)


def make(name: str, server: SandboxServer, http: requests.Session) -> Driver:
    return DRIVERS[name](server, http)


# -- what every provider shares ------------------------------------------------------------------


def test_drivers_cover_every_provider() -> None:
    assert set(DRIVERS) == set(PROVIDERS)


def test_wrong_credential_gets_the_providers_own_refusal(driver: Driver, server: SandboxServer) -> None:
    for headers in (driver.bad_auth, {}):
        answer = driver.trigger(headers=headers)
        assert answer.status_code == driver.rejected_status
        if driver.rejected_status == 203:
            assert answer.headers["Content-Type"].startswith("text/html") and "Sign In" in answer.text
        else:
            assert driver.error_message(answer)
    refusals = [call["status"] for call in calls(server, driver.name) if call["method"] == "POST"]
    assert refusals == [driver.rejected_status] * 2
    assert driver.trigger().status_code < 300


PROGRESS = {  # provider -> (word in the trigger answer, after poll 1, after poll 2) per outcome
    "mesa": {o: ["queued", "in_progress", o] for o in ("completed", "failed")},
    "google-csr": {o: ["running", "running", o] for o in ("completed", "failed")},
    "azure-devops": {o: ["queued", "inProgress", o] for o in ("completed", "failed", "abandoned")},
    "codearts": {"completed": ["-", "started", "finished"], "failed": ["-", "started", "failed"]},
    "gitlab-mirror": {o: ["-", "started", w] for o, w in
                      (("completed", "finished"), ("failed", "failed"), ("canceled", "canceled"))},
    "gitea-mirror": {"completed": ["-", "unchanged", "moved"], "failed": ["-", "unchanged", "unchanged"]},
}


@pytest.mark.parametrize(("provider", "outcome"), [(p, o) for p, words in PROGRESS.items() for o in words])
def test_progress_over_polls_to_each_terminal_state(provider: str, outcome: str, server: SandboxServer,
                                                    http: requests.Session) -> None:
    configure(server, provider, outcome=outcome, error="upstream said no")
    drive = make(provider, server, http)
    drive.prepare()
    triggered = drive.trigger()
    assert triggered.status_code in (200, 201)
    words = [drive.word(triggered)] + [drive.word(drive.poll(triggered)) for _ in range(2)]
    assert words == PROGRESS[provider][outcome]
    assert drive.word(drive.poll(triggered)) == words[-1]  # a finished operation stays finished
    (op,) = requests.get(f"{server.url}/_sandbox/operations?provider={provider}").json()["operations"]
    assert op["phase"] == "done" and op["outcome"] == outcome


def test_the_failure_message_is_the_error_setting(server: SandboxServer, http: requests.Session) -> None:
    reasons = {"mesa": lambda b: b["error"], "google-csr": lambda b: b["error"]["message"],
               "azure-devops": lambda b: b["detailedStatus"]["errorMessage"],
               "codearts": lambda b: b["last_error"], "gitlab-mirror": lambda b: b["last_error"]}
    for provider, reason in reasons.items():
        configure(server, provider, outcome="failed", polls=1, error=f"{provider} broke")
        drive = make(provider, server, http)
        assert reason(drive.poll(drive.trigger()).json()) == f"{provider} broke"


def test_call_log_records_each_request_as_sent(driver: Driver, server: SandboxServer) -> None:
    triggered = driver.trigger(params={"trace": "1"})
    call = calls(server, driver.name)[-1]
    assert call["provider"] == driver.name
    assert call["method"] == "POST"
    assert call["path"] == urllib.parse.urlsplit(triggered.request.url).path  # raw: %2F stays %2F
    assert call["query"]["trace"] == "1"
    headers = {name.lower(): value for name, value in call["headers"].items()}  # werkzeug Title-Cases names
    assert all(headers[name.lower()] == value for name, value in driver.auth.items())
    assert call["body"] == (triggered.request.body or b"").decode()
    assert call["json"] == (triggered.request.body and requests.compat.json.loads(triggered.request.body))
    assert call["status"] == triggered.status_code
    assert abs(call["at"] - time.time()) < 5
    assert all(c["provider"] == driver.name for c in calls(server, driver.name))
    assert requests.delete(f"{server.url}/_sandbox/calls").status_code == 200
    assert calls(server, driver.name) == []


def test_faults_are_answered_in_order_in_the_providers_shape(driver: Driver, server: SandboxServer) -> None:
    inject(server, driver.name, {"status": 500}, {"status": 429, "retry_after": 2}, {"status": 401})
    crashed, throttled, refused, normal = (driver.trigger() for _ in range(4))
    assert (crashed.status_code, throttled.status_code, refused.status_code) == (500, 429, 401)
    assert throttled.headers["Retry-After"] == "2"
    for answer in (crashed, throttled, refused):
        assert driver.error_message(answer)
    assert normal.status_code < 300


def test_a_fault_can_quote_back_what_the_request_sent(driver: Driver, server: SandboxServer) -> None:
    """``{request}`` in a fault's message: the credential header and body, as sent and percent-encoded."""
    inject(server, driver.name, {"status": 401, "message": "refused: {request}"})
    refused = driver.trigger()
    sent = next(iter(driver.auth.items()))
    quoted = driver.error_message(refused)
    assert refused.status_code == 401 and quoted.startswith(f"refused: you sent {sent[0]}: {sent[1]}")
    assert urllib.parse.quote(f"{sent[0]}: {sent[1]}", safe="") in quoted
    body = (refused.request.body or b"").decode()
    assert (f"body: {body}" in quoted) if body else "body:" not in quoted


def test_a_failed_operation_can_quote_back_the_request_that_reads_it(server: SandboxServer,
                                                                     http: requests.Session) -> None:
    configure(server, "gitlab-mirror", outcome="failed", polls=1, error='fetch failed: {request} "quoted"')
    drive = make("gitlab-mirror", server, http)
    last_error = drive.poll(drive.trigger()).json()["last_error"]
    assert last_error.startswith(f'fetch failed: you sent PRIVATE-TOKEN: {TOKEN} (sign in again: ')
    assert last_error.endswith('"quoted"')  # the answer is still JSON, the echo escaped inside its string


def test_timeout_fault_delays_then_answers_normally(driver: Driver, server: SandboxServer) -> None:
    inject(server, driver.name, {"timeout": 0.2})
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        driver.trigger(timeout=(1, 0.05))
    deadline = time.monotonic() + 2
    while calls(server, driver.name)[-1]["status"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls(server, driver.name)[-1]["status"] in (200, 201)
    assert time.monotonic() - started >= 0.2


def test_settings_reset_restores_everything(driver: Driver, server: SandboxServer) -> None:
    configure(server, driver.name, polls=5, latency=0.01)
    inject(server, driver.name, {"status": 500}, {"status": 500})
    driver.trigger()
    assert calls(server, driver.name)
    assert requests.delete(f"{server.url}/_sandbox/settings").json() == {"reset": True}
    fresh = requests.get(f"{server.url}/_sandbox/settings/{driver.name}").json()
    assert fresh["polls"] == 2 and fresh["latency"] == 0.0
    assert calls(server, driver.name) == []
    assert requests.get(f"{server.url}/_sandbox/operations").json() == {"operations": []}
    assert driver.trigger().status_code < 300  # the second queued 500 is gone too


def test_concurrent_triggers_get_unique_operations(server: SandboxServer) -> None:
    def trigger(_: int) -> str:
        with requests.Session() as session:
            return Mesa(server, session).trigger().json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(trigger, range(24)))
    assert len(set(ids)) == 24
    assert len(requests.get(f"{server.url}/_sandbox/operations?provider=mesa").json()["operations"]) == 24
    assert [call["status"] for call in calls(server, "mesa")] == [201] * 24


def test_unknown_paths_and_token_faults_keep_the_providers_shapes(server: SandboxServer,
                                                                  http: requests.Session) -> None:
    gitea = Gitea(server, http)
    missing = gitea.request("GET", "/api/v1/nowhere")
    assert missing.status_code == 404 and gitea.error_message(missing)
    wrong_method = CodeArts(server, http).request("DELETE", CodeArts.path)
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    assert [call["path"] for call in calls(server, "gitea-mirror")] == ["/gitea/api/v1/nowhere"]
    inject(server, "google-csr", {"status": 503})
    oauth = http.post(f"{server.url}/google/token", data={"grant_type": "x"})
    assert oauth.status_code == 503 and oauth.json()["error"] == "server_error"
    inject(server, "codearts", {"status": 429, "retry_after": 1})
    iam = http.post(f"{server.url}/codearts/iam/v3/auth/tokens", json={})
    assert iam.status_code == 429 and iam.json()["error"]["code"] == 429 and iam.headers["Retry-After"] == "1"


def test_azure_soft_throttling_is_a_200_with_retry_after(server: SandboxServer,
                                                         http: requests.Session) -> None:
    inject(server, "azure-devops", {"status": 200, "retry_after": 3})
    answer = Azure(server, http).trigger()
    assert answer.status_code == 200 and answer.headers["Retry-After"] == "3"
    assert answer.json()["status"] == "queued"


# -- progress settings -------------------------------------------------------------------------


def test_polls_setting(server: SandboxServer, http: requests.Session) -> None:
    drive = Mesa(server, http)
    configure(server, "mesa", polls=0)
    assert drive.word(drive.trigger()) == "completed"
    configure(server, "mesa", polls=3)
    triggered = drive.trigger()
    words = [drive.word(drive.poll(triggered)) for _ in range(3)]
    assert words == ["in_progress", "in_progress", "completed"]


def test_queued_polls_make_the_queued_word_visible_to_per_repo_providers(server: SandboxServer,
                                                                        http: requests.Session) -> None:
    configure(server, "gitlab-mirror", queued_polls=1, polls=3)
    drive = GitLab(server, http)
    triggered = drive.trigger()
    assert [drive.word(drive.poll(triggered)) for _ in range(3)] == ["scheduled", "started", "finished"]


def test_seconds_setting_ends_by_the_clock(server: SandboxServer, http: requests.Session) -> None:
    configure(server, "azure-devops", seconds=0.15)
    drive = Azure(server, http)
    triggered = drive.trigger()
    assert drive.word(triggered) == "queued"
    assert [drive.word(drive.poll(triggered)) for _ in range(4)] == ["inProgress"] * 4
    time.sleep(0.15)
    assert drive.word(drive.poll(triggered)) == "completed"


def test_latency_setting(server: SandboxServer, http: requests.Session) -> None:
    configure(server, "gitea-mirror", latency=0.1)
    started = time.monotonic()
    assert Gitea(server, http).request("POST", "/api/v1/repos/acme/widgets/mirror-sync").status_code == 200
    assert time.monotonic() - started >= 0.1


def test_settings_are_validated(server: SandboxServer, http: requests.Session) -> None:
    url = f"{server.url}/_sandbox/settings"
    assert http.put(f"{url}/mesa", json={"pols": 3}).status_code == 400
    assert http.put(f"{url}/mesa", json={"outcome": "abandoned"}).status_code == 400
    assert http.put(f"{url}/azure-devops", json={"outcome": "abandoned"}).status_code == 200
    assert http.put(f"{url}/google-csr", json={"unpollable_status": 418}).status_code == 400
    assert http.put(f"{url}/nope", json={}).status_code == 404
    typo = {"responses": [{"stauts": 500}]}
    assert http.post(f"{server.url}/_sandbox/faults/mesa", json=typo).status_code == 400
    assert set(http.get(url).json()) == set(PROVIDERS)
    assert http.get(f"{server.url}/_sandbox/").json()["providers"]["mesa"] == f"{server.url}/mesa/v1"


def test_chaos_is_seeded(server: SandboxServer, http: requests.Session) -> None:
    def run() -> list[int]:
        http.delete(f"{server.url}/_sandbox/settings")
        inject(server, "codearts", chaos={"rate": 1.0, "seed": 1, "timeout": 0})
        drive = CodeArts(server, http)
        return [drive.poll(None).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert set(first) == {200, 429, 500}
    inject(server, "codearts", chaos=None)
    assert {CodeArts(server, http).poll(None).status_code for _ in range(5)} == {200}


# -- provider specifics ------------------------------------------------------------------------


def test_mesa_validates_the_body_and_reports_refs(server: SandboxServer, http: requests.Session) -> None:
    drive = Mesa(server, http)
    syncs = "/acme/widgets/upstream/syncs"
    bad = drive.request("POST", syncs, json={"direction": "sideways"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert drive.request("POST", syncs, json={"direction": "pull", "x": 1}).status_code == 400
    rejected = {"name": "release", "before": "a" * 40, "after": "b" * 40, "outcome": "rejected"}
    configure(server, "mesa", polls=1, refs=[rejected])
    sync = drive.request("POST", "/acme/widgets/upstream/syncs",
                         json={"direction": "push", "ref_globs": {"branches": "release/*"}}).json()
    assert sync["ref_globs"] == {"branches": "release/*", "tags": ""} and sync["stats"] is None
    done = drive.request("GET", f"/acme/widgets/upstream/syncs/{sync['id']}").json()
    assert done["stats"] == {"refs": [rejected]} and done["direction"] == "push"
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    assert drive.request("GET", "/acme/other/upstream/syncs/" + sync["id"]).status_code == 404
    assert drive.request("GET", "/acme/widgets/upstream/syncs").json()["syncs"][0]["id"] == sync["id"]


def test_google_unpollable_operation_answers_404(server: SandboxServer, http: requests.Session) -> None:
    configure(server, "google-csr", pollable=False)
    drive = Google(server, http)
    triggered = drive.trigger()
    assert triggered.json()["metadata"]["name"] == "projects/acme/repos/widgets"
    gone = drive.poll(triggered)
    assert gone.status_code == 404 and gone.json()["error"]["status"] == "NOT_FOUND"
    assert drive.trigger(json={"force": True}).status_code == 400  # the body must be empty
    repo = drive.request("GET", "/v1/projects/acme/repos/widgets").json()
    assert repo["name"] == "projects/acme/repos/widgets"


def test_google_service_account_token_is_minted_and_accepted(server: SandboxServer,
                                                             http: requests.Session) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "acme", "private_key_id": "k1", "private_key": pem,
            "client_email": "bridge@acme.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{server.url}/google/token"}
    drive = Google(server, http)
    for scopes, expected in ((["https://www.googleapis.com/auth/cloud-platform"], 200),
                             (["https://www.googleapis.com/auth/userinfo.email"], 403)):
        credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        credentials.refresh(Request())
        assert credentials.token.startswith("ya29.") and credentials.expiry is not None
        answer = drive.trigger(headers={"Authorization": f"Bearer {credentials.token}"})
        assert answer.status_code == expected
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED"
    mints = [call for call in calls(server, "google-csr") if call["path"] == "/google/token"]
    assert [call["status"] for call in mints] == [200, 200]
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in mints[0]["body"]
    refused = http.post(f"{server.url}/google/token", data={"grant_type": "password"})
    assert refused.status_code == 400 and refused.json()["error"] == "unsupported_grant_type"


def test_bitbucket_enable_is_synchronous_with_refs_from_settings(server: SandboxServer,
                                                                http: requests.Session) -> None:
    configure(server, "bitbucket-dc", diverged_refs=["refs/heads/feature"], ahead_refs=["refs/tags/v1"])
    drive = Bitbucket(server, http)
    assert drive.word(drive.poll(None)) == "never"
    status = drive.trigger().json()
    assert status["enabled"] and status["available"] and status["lastSync"] > 1e12
    assert status["divergedRefs"] == [{"id": "refs/heads/feature", "displayId": "feature", "type": "BRANCH",
                                       "state": "DIVERGED", "tag": False}]
    assert status["aheadRefs"][0]["type"] == "TAG" and status["orphanedRefs"] == []
    one = drive.request("GET", drive.path, params={"at": "feature"}).json()
    assert one["aheadRefs"] == [] and len(one["divergedRefs"]) == 1
    merge = {"refId": "refs/heads/feature", "action": "MERGE", "context": {"commitMessage": "m"}}
    configure(server, "bitbucket-dc", synchronize=200)
    still = drive.request("POST", drive.path + "/synchronize", json=merge)
    assert still.status_code == 200 and still.json()["state"] == "AHEAD"
    configure(server, "bitbucket-dc", synchronize=204)
    discard = {"refId": "refs/tags/v1", "action": "DISCARD"}
    assert drive.request("POST", drive.path + "/synchronize", json=discard).status_code == 204
    again = drive.request("POST", drive.path + "/synchronize", json=discard)
    assert again.status_code == 409 and drive.error_message(again)
    assert drive.request("POST", drive.path, json={"enabled": False}).status_code == 204
    configure(server, "bitbucket-dc", available=False)
    assert drive.trigger().status_code == 409


def test_azure_api_version_and_401_mode(server: SandboxServer, http: requests.Session) -> None:
    drive = Azure(server, http)
    missing = drive.request("POST", drive.path, json={"source": drive.source})
    assert missing.status_code == 400 and missing.json()["typeKey"] == "VssVersionNotSpecifiedException"
    wrong = drive.request("POST", drive.path + "?api-version=6.0", json={"source": drive.source})
    assert wrong.status_code == 400 and drive.error_message(wrong)
    assert drive.request("POST", drive.path + "?api-version=7.1", json={}).status_code == 400
    triggered = drive.trigger()
    assert triggered.headers["Content-Type"].endswith("api-version=7.1")
    body = triggered.json()
    assert isinstance(body["operationId"], int) and body["source"] == drive.source
    assert body["detailedStatus"]["allSteps"] and body["detailedStatus"]["errorMessage"] is None
    configure(server, "azure-devops", auth_failure=401)
    refused = drive.trigger(headers=drive.bad_auth)
    assert refused.status_code == 401 and drive.error_message(refused).startswith("TF400813")


def test_codearts_iam_token_is_minted_and_accepted(server: SandboxServer, http: requests.Session) -> None:
    def login(password: str, scoped: bool = True) -> requests.Response:
        identity = {"methods": ["password"], "password": {"user": {
            "name": "sandbox-user", "password": password, "domain": {"name": "acme"}}}}
        auth: dict[str, Any] = {"identity": identity}
        if scoped:
            auth["scope"] = {"project": {"name": "cn-north-4"}}
        return http.post(f"{server.url}/codearts/iam/v3/auth/tokens", json={"auth": auth})

    minted = login("sandbox-password")
    assert minted.status_code == 201 and minted.json()["token"]["expires_at"].endswith("Z")
    drive = CodeArts(server, http)
    triggered = drive.trigger(headers={"X-Auth-Token": minted.headers["X-Subject-Token"]})
    assert triggered.status_code == 200 and set(triggered.json()) == {"jid"}
    wrong = login("nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "The username or password is wrong."
    assert login("sandbox-password", scoped=False).status_code == 400
    mints = [c["status"] for c in calls(server, "codearts") if c["path"].endswith("/auth/tokens")]
    assert mints == [201, 401, 400]


def test_codearts_status_document_and_validation(server: SandboxServer, http: requests.Session) -> None:
    drive = CodeArts(server, http)
    status = drive.poll(None).json()
    assert status == {"update_status": "none", "last_update_at": None, "last_successful_update_at": None,
                      "number_of_failures": 0, "last_error": None}
    assert drive.request("POST", "/v4/repositories/abc/remote-mirror", json={}).status_code == 400
    assert drive.request("POST", drive.path, json={"username": "not base64!"}).status_code == 400
    configure(server, "codearts", outcome="failed", polls=1)
    for _ in range(2):
        drive.trigger(json={"username": base64.b64encode(b"u").decode(), "force_fetch": True})
        failed = drive.poll(None).json()
    assert failed["number_of_failures"] == 2 and failed["last_successful_update_at"] is None


def test_gitlab_min_interval_and_refusals(server: SandboxServer, http: requests.Session) -> None:
    drive = GitLab(server, http)
    unencoded = drive.request("POST", "/api/v4/projects/acme/widgets/mirror/pull")
    assert unencoded.status_code == 404
    configure(server, "gitlab-mirror", polls=1, min_interval=60)
    drive.trigger()
    first = drive.poll(None).json()
    assert first["update_status"] == "finished"
    assert drive.trigger().status_code == 200  # accepted, but within the interval: no new pull
    assert drive.poll(None).json()["last_update_started_at"] == first["last_update_started_at"]
    assert len(requests.get(f"{server.url}/_sandbox/operations").json()["operations"]) == 1
    configure(server, "gitlab-mirror", paused=True)
    assert drive.error_message(drive.trigger()) == "Mirroring for the project is on pause"
    configure(server, "gitlab-mirror", mirror=False)
    assert drive.error_message(drive.trigger()) == "The project is not mirrored"


def test_gitea_refuses_a_non_mirror(server: SandboxServer, http: requests.Session) -> None:
    configure(server, "gitea-mirror", mirror=False)
    refused = Gitea(server, http).trigger()
    assert refused.status_code == 400 and refused.json()["message"] == "Repository is not a mirror"


def test_token_overrides(http: requests.Session) -> None:
    app = create_app({"mesa": "other-key", "codearts-iam": "bot:secret"})
    with SandboxServer(app) as other:
        drive = Mesa(other, http)
        assert drive.trigger().status_code == 401
        assert drive.trigger(headers={"Authorization": "Bearer other-key"}).status_code == 201
        assert Gitea(other, http).trigger().status_code == 200
        user = {"name": "bot", "password": "secret", "domain": {"name": "d"}}
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                         "scope": {"project": {"id": "p1"}}}}
        assert http.post(f"{other.url}/codearts/iam/v3/auth/tokens", json=body).status_code == 201
    with pytest.raises(ValueError, match="unknown provider"):
        create_app({"mezza": "x"})


def test_main_prints_each_base_url(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import sandbox.server

    class Stub:
        server_port = 8123

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    monkeypatch.setattr(sandbox.server, "make_server", lambda *args, **kwargs: Stub())
    sandbox.server.main("127.0.0.1", 8123)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(PROVIDERS)
    assert "http://127.0.0.1:8123/gitlab" in lines[PROVIDERS.index("gitlab-mirror")]
