"""Secrets never leave: a full run through real processes, then every byte it produced is searched.

Web (granian) and worker (WorkerPool) run as real processes with every secret configured: two webhook
secrets (a rotation), the provider token, the API token. The config file names them only as ${VARS}.
Syncs complete, retry after the provider echoes the token in a 500 and a 429, fail on a 401 whose
message carries the token and its Basic-auth base64, and are retried through the API; notifications
go to tests/receiver.py. Then each secret, and its base64 forms, is looked for in every log line,
every HTTP answer we got, every notification, everything in Redis and its append-only file.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest
import requests
from redis import Redis

from bridge.embedded import EmbeddedRedis
from sandbox.app import create_app as sandbox_app
from sandbox.server import SandboxServer
from tests.conftest import github_headers, mesa_config
from tests.receiver import Receiver
from tests.test_hooks import push_body
from tests.test_reliability import record_numbers, until, wait_done, web_process, worker_process, write_config

WEBHOOK_SECRET = "whsec-5Jq8Zp2Lr7Tn4Vb9Xc"
OLD_WEBHOOK_SECRET = "whsec-old-3Kd6Hs1Qw8Ey"
MESA_TOKEN = "mesa-live-7fK2pX9qR4tW1zL8"
API_TOKEN = "ops-api-Bv5Nc3Mx7Lk2Jh6"
SECRETS = {"webhook secret": WEBHOOK_SECRET, "old webhook secret": OLD_WEBHOOK_SECRET,
           "provider token": MESA_TOKEN, "API token": API_TOKEN}
CONFIG = """
sources:
  github:
    kind: github
    secrets: ["${GITHUB_WEBHOOK_SECRET}", "${GITHUB_WEBHOOK_SECRET_OLD}"]
targets:
  widgets-mesa:
    provider: mesa
    base_url: ${SANDBOX_URL}/mesa/v1
    org: acme
    repo: widgets
    token: ${MESA_API_KEY}
    min_interval: 0
    retries: 5
routes:
  - {source: github, repo: acme/widgets, targets: [widgets-mesa]}
notify:
  - url: ${NOTIFY_URL}
    "on": [queued, in_progress, completed, failed]
"""


def forms(secret: str) -> dict[str, str]:
    """The secret and the forms it takes on the way out: base64 (Basic-auth headers and the like, padded or
    not), percent-encoded (URLs, forms, links quoting a request) and JSON-escaped, and the two stacked.

    Written out here, independently of ``bridge.redact``, so that a form the scrubber forgets is found."""
    found = {"plain": secret}
    for label, raw in (("base64", secret), ("base64 of :secret", ":" + secret)):
        for flavour, encode in (("", base64.b64encode), (" (url-safe)", base64.urlsafe_b64encode)):
            encoded = encode(raw.encode()).decode()
            found[label + flavour] = encoded
            found[label + flavour + " unpadded"] = encoded.rstrip("=")
    found["JSON-escaped"] = json.dumps(secret)[1:-1]
    found["JSON-escaped (UTF-8)"] = json.dumps(secret, ensure_ascii=False)[1:-1]
    for label, text in list(found.items()):
        found[f"{label}, percent-encoded"] = quote(text, safe="")
        found[f"{label}, form-encoded"] = quote_plus(text)
    return found


def redis_contents(client: Redis) -> bytes:
    """Every key and value in Redis (RQ's zlib-compressed job data decompressed too)."""
    chunks: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [item for _, fields in client.xrange(key) for pair in fields.items() for item in pair]
        else:
            values = []
        for value in (key, *values):
            chunks.append(value)
            with suppress(zlib.error):
                chunks.append(zlib.decompress(value))
    return b"\n".join(chunks)


def leaks(haystacks: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [f"{name} ({form}) in {where}" for name, secret in secrets.items()
            for form, needle in forms(secret).items() for where, data in haystacks.items() if needle.encode() in data]


class Recorder:
    """Every HTTP answer the bridge gave us, as raw as requests keeps it: status, headers, body."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, url, timeout=5, **kwargs)
        headers = "".join(f"{name}: {value}\n" for name, value in response.headers.items())
        self.answers.append(f"{method} {url} -> {response.status_code}\n{headers}\n".encode() + response.content)
        return response


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def provider() -> Iterator[SandboxServer]:
    """A sandbox whose Mesa accepts only our token (the shared one takes "sandbox-token")."""
    with SandboxServer(sandbox_app(tokens={"mesa": MESA_TOKEN})) as server:
        yield server


def test_no_secret_appears_in_logs_answers_notifications_or_redis(
        tmp_path: Path, provider: SandboxServer, receiver: Receiver, request: pytest.FixtureRequest) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    config = tmp_path / "syncbridge.yml"
    config.write_text(CONFIG)
    env = {"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_WEBHOOK_SECRET_OLD": OLD_WEBHOOK_SECRET,
           "MESA_API_KEY": MESA_TOKEN, "SANDBOX_URL": provider.url, "NOTIFY_URL": f"{receiver.url}/notify",
           "SYNCBRIDGE_API_TOKEN": API_TOKEN, "SYNCBRIDGE_LOG_LEVEL": "DEBUG"}
    mesa = f"{provider.url}/_sandbox"
    requests.put(f"{mesa}/settings/mesa", json={"polls": 1}, timeout=5).raise_for_status()
    http = Recorder()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"ops:{API_TOKEN}".encode()).decode()}

    def push(delivery: str, after: str, secret: str = WEBHOOK_SECRET) -> requests.Response:
        body = push_body(after=after)
        headers = github_headers(body, delivery=delivery, secret=secret)
        return http("POST", f"{url}/hooks/github", data=body, headers=headers)

    def fault(*responses: dict[str, Any]) -> None:
        requests.post(f"{mesa}/faults/mesa", json={"responses": list(responses)}, timeout=5).raise_for_status()

    try:
        with web_process(config, server.url, tmp_path / "web.log", **env) as (url, _), \
                worker_process(config, server.url, tmp_path / "worker.log", **env):
            # 1. A plain sync, signed with the current secret.
            first = push("s-1", "1" * 40).json()["jobs"][0]["id"]
            records = {first: _done(http, url, first, auth)}
            # 2. Signed with the old secret (a rotation); the provider echoes the token in a 500 and a 429.
            basic_token = base64.b64encode(f":{MESA_TOKEN}".encode()).decode()
            fault({"status": 500, "message": f"upstream rejected credential {MESA_TOKEN}"},
                  {"status": 429, "retry_after": 1, "message": f"slow down, Authorization: Basic {basic_token}"})
            second = push("s-2", "2" * 40, secret=OLD_WEBHOOK_SECRET).json()["jobs"][0]["id"]
            records[second] = _done(http, url, second, auth)
            # 3. A 401 whose message carries the token and its base64: the job fails with the reason, scrubbed.
            fault({"status": 401, "message": f"token {MESA_TOKEN} revoked "
                                             f"(was {base64.b64encode(MESA_TOKEN.encode()).decode()})"})
            third = push("s-3", "3" * 40).json()["jobs"][0]["id"]
            records[third] = _done(http, url, third, auth)
            # 4. The failed one retried through the API (it needs the token), and completes.
            assert http("POST", f"{url}/jobs/{third}/retry", headers=auth).status_code == 202
            retried = _done(http, url, third, auth)
            # 5. Refusals: a bad signature, the API without or with a wrong token.
            assert push("s-4", "4" * 40, secret="not-the-secret").status_code == 401
            assert http("GET", f"{url}/jobs").status_code == 401
            assert http("GET", f"{url}/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
            # 6. Everything a user can read.
            for path in ("/jobs", "/jobs?status=failed", "/deliveries/s-1", "/deliveries/s-2", "/deliveries/s-3",
                         "/dashboard.json", "/", "/metrics", "/readyz", "/healthz"):
                assert http("GET", f"{url}{path}", headers=basic).status_code == 200, path
            until(lambda: sum(r["json"]["status"] in ("completed", "failed") for r in receiver.requests) >= 4, 30,
                  what="the notifications of every ending")
    finally:
        server.stop()  # a clean shutdown: the append-only file is complete

    assert [records[first]["status"], records[second]["status"], records[third]["status"]] == [
        "completed", "completed", "failed"]
    assert records[second]["attempts"] == 3  # the 500 and the 429 were retried
    assert "mesa answered 401" in records[third]["error"] and "***" in records[third]["error"]
    assert retried["status"] == "completed"
    assert b"***" in (tmp_path / "worker.log").read_bytes()  # the echoed token did reach the logs, masked

    haystacks = everything_written(tmp_path, server, http, receiver)
    record_numbers(request, "secrets", secrets=len(SECRETS), forms_per_secret=len(forms(WEBHOOK_SECRET)),
                   log_lines=sum(data.count(b"\n") for name, data in haystacks.items() if "log" in name),
                   http_answers=len(http.answers), notifications=len(receiver.requests),
                   redis_bytes=len(haystacks["Redis"]), aof_bytes=len(haystacks["append-only file"]))
    assert haystacks["append-only file"] and haystacks["Redis"]
    assert leaks(haystacks, SECRETS) == []


def everything_written(tmp_path: Path, server: EmbeddedRedis, http: Recorder, receiver: Receiver) -> dict[str, bytes]:
    """Every byte the run let out: both logs, every HTTP answer, every notification, Redis (started again on
    its data, after the clean stop) and its append-only file."""
    haystacks = {"web log": (tmp_path / "web.log").read_bytes(), "worker log": (tmp_path / "worker.log").read_bytes(),
                 "HTTP answers": b"\n".join(http.answers),
                 "notifications": b"\n".join(f"{r['path']} {r['headers']} {r['body']}".encode()
                                             for r in receiver.requests)}
    server.start()
    try:
        haystacks["Redis"] = redis_contents(Redis.from_url(server.url))
    finally:
        server.stop()
    haystacks["append-only file"] = b"".join(path.read_bytes() for path in (tmp_path / "redis").rglob("*")
                                             if path.is_file() and "appendonly" in str(path))
    return haystacks


def _done(http: Recorder, url: str, job_id: str, auth: dict[str, str]) -> dict[str, Any]:
    return until(lambda: (r := http("GET", f"{url}/jobs/{job_id}", headers=auth).json())["status"]
                 in ("completed", "failed") and r, 60, interval=0.2, what=f"job {job_id} ending")


# -- Providers that quote back what they were sent ---------------------------------------------------------

# Characters that percent-encoding changes, in the token and in the PAT's Basic-auth base64 ("/"): the links
# the echoes end with then carry forms of them that differ from the plain ones.
GITLAB_TOKEN = "glpat-Xw3/Rt8+Yu1=Io6&Pa4"
AZURE_PAT = "azpat-7Gh2?Jk9>Lz4~Xc1Vb6"
IAM_USER = "mirror-bot"
IAM_PASSWORD = 'Hw-"pa$s/w\u00f6rd+&=?9Kx'  # a quote, a non-ASCII letter, URL specials: every encoder differs
UPSTREAM_PASSWORD = "upstream-Pw5Ty8Ui2Op"  # GitLab's own credential for the mirror's upstream: never ours
ECHO_SECRETS = {"webhook secret": WEBHOOK_SECRET, "GitLab token": GITLAB_TOKEN, "Azure PAT": AZURE_PAT,
                "IAM password": IAM_PASSWORD, "upstream password in a URL": UPSTREAM_PASSWORD}
ECHO_CONFIG = """
sources:
  github: {kind: github, secret: "${GITHUB_WEBHOOK_SECRET}"}
targets:
  w-codearts:
    provider: codearts
    base_url: ${SANDBOX_URL}/codearts
    repository_id: 123
    iam: {username: mirror-bot, password: "${IAM_PASSWORD}", domain: acme, project: cn-north-4,
          endpoint: "${SANDBOX_URL}/codearts/iam"}
  w-google:
    provider: google-csr
    base_url: ${SANDBOX_URL}/google
    repo: projects/acme/repos/widgets
    credentials_file: ${GOOGLE_APPLICATION_CREDENTIALS}
  w-gitlab:
    provider: gitlab-mirror
    base_url: ${SANDBOX_URL}/gitlab
    project: acme/widgets
    token: ${GITLAB_TOKEN}
  w-azure:
    provider: azure-devops
    base_url: ${SANDBOX_URL}/azure
    organization: acme
    project: widgets
    repository: widgets-fork
    source: {collection_id: c0c0c0c0-0000-0000-0000-000000000001, project_id: p0p0p0p0-0000-0000-0000-000000000002,
             repository_id: r0r0r0r0-0000-0000-0000-000000000003}
    token: ${AZURE_PAT}
routes:
  - {source: github, repo: acme/widgets, targets: [w-codearts, w-google, w-gitlab, w-azure]}
notify:
  - url: ${NOTIFY_URL}
    "on": [queued, in_progress, completed, failed]
"""


@pytest.fixture
def echoing_provider() -> Iterator[SandboxServer]:
    """A sandbox that accepts only our credentials; its faults and errors quote what each request sent."""
    tokens = {"gitlab-mirror": GITLAB_TOKEN, "azure-devops": AZURE_PAT, "codearts-iam": f"{IAM_USER}:{IAM_PASSWORD}"}
    with SandboxServer(sandbox_app(tokens=tokens)) as server:
        yield server


def test_credentials_providers_quote_back_minted_ones_included_never_leave(
        tmp_path: Path, echoing_provider: SandboxServer, receiver: Receiver, request: pytest.FixtureRequest) -> None:
    """Every provider quotes back what it was sent: the IAM endpoint our password (JSON-escaped in the
    body it echoes, and that body percent-encoded in a link), Google's token endpoint our signed JWT
    assertion, CodeArts and Google the access tokens minted from those, GitLab its token and a mirror URL
    with its upstream's password, Azure the Basic-auth header of the PAT. The jobs fail with those
    words as their reason and remote details; nothing of any credential may come out anywhere: job JSON,
    the dashboard, job pages, notifications, the text and JSON logs, Redis."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    service_account = tmp_path / "service-account.json"
    private_key = _service_account(service_account, f"{echoing_provider.url}/google/token")
    config = tmp_path / "syncbridge.yml"
    config.write_text(ECHO_CONFIG)
    env = {"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "SANDBOX_URL": echoing_provider.url, "IAM_PASSWORD": IAM_PASSWORD,
           "GOOGLE_APPLICATION_CREDENTIALS": str(service_account), "GITLAB_TOKEN": GITLAB_TOKEN,
           "AZURE_PAT": AZURE_PAT, "NOTIFY_URL": f"{receiver.url}/notify", "SYNCBRIDGE_LOG_LEVEL": "DEBUG"}
    admin = f"{echoing_provider.url}/_sandbox"
    for provider, faults in {"codearts": [{"status": 500, "message": "IAM is down: {request}"}],
                             "google-csr": [{"status": 500, "message": "token endpoint: {request}"}],
                             "azure-devops": [{"status": 401, "message": "TF400813: {request}"}]}.items():
        requests.post(f"{admin}/faults/{provider}", json={"responses": faults}, timeout=5).raise_for_status()
    failing = {"codearts": "git fetch failed: {request}", "google-csr": "mirror fetch refused: {request}",
               "gitlab-mirror": f"fetch from https://{IAM_USER}:{UPSTREAM_PASSWORD}@upstream.example/acme/widgets.git "
                                "failed; {request}"}
    for provider, error in failing.items():
        requests.put(f"{admin}/settings/{provider}", json={"polls": 1, "outcome": "failed", "error": error},
                     timeout=5).raise_for_status()
    http = Recorder()
    try:
        with web_process(config, server.url, tmp_path / "web.log", **env) as (url, _), \
                worker_process(config, server.url, tmp_path / "worker.log", SYNCBRIDGE_LOG_FORMAT="json", **env):
            body = push_body(after="5" * 40)
            answer = http("POST", f"{url}/hooks/github", data=body, headers=github_headers(body, delivery="echo-1",
                                                                                            secret=WEBHOOK_SECRET))
            assert answer.status_code == 202, answer.text
            jobs = {job["target"]: job["id"] for job in answer.json()["jobs"]}
            records = {target: _done(http, url, job_id, {}) for target, job_id in jobs.items()}
            for path in ("/jobs", "/jobs?status=failed", "/deliveries/echo-1", "/dashboard.json", "/", "/metrics",
                         *(f"/jobs/{job_id}" for job_id in jobs.values())):
                assert http("GET", f"{url}{path}").status_code == 200, path
            for job_id in jobs.values():  # a job's page for people, where the bridge has one
                http("GET", f"{url}/jobs/{job_id}", headers={"Accept": "text/html"})
            until(lambda: sum(r["json"]["status"] == "failed" for r in receiver.requests) >= len(jobs), 30,
                  what="the notifications of every failure")
    finally:
        server.stop()

    # Each provider did quote us, and the bridge kept its words with our credentials masked.
    assert {target: record["status"] for target, record in records.items()} == dict.fromkeys(jobs, "failed")
    for target, record in records.items():
        assert "you sent" in record["error"] and "***" in record["error"], (target, record["error"])
    assert records["w-codearts"]["remote"]["last_error"].startswith("git fetch failed: you sent X-Auth-Token: ***")
    assert "https://***@upstream.example/acme/widgets.git" in records["w-gitlab"]["remote"]["last_error"]
    assert records["w-google"]["remote"]["error"]["message"].startswith("mirror fetch refused: you sent "
                                                                        "Authorization: Bearer ***")
    assert "TF400813: you sent Authorization: Basic ***" in records["w-azure"]["error"]
    minted = _minted_credentials(echoing_provider)
    assert {name.rsplit(" ", 1)[0] for name in minted} == {"IAM token", "Google access token", "JWT assertion"}

    haystacks = everything_written(tmp_path, server, http, receiver)
    secrets = {**ECHO_SECRETS, **minted, "service-account private key": private_key}
    record_numbers(request, "secrets_echoed", secrets=len(secrets), minted=len(minted),
                   forms_per_secret=len(forms(IAM_PASSWORD)),
                   log_lines=sum(data.count(b"\n") for name, data in haystacks.items() if "log" in name),
                   http_answers=len(http.answers), notifications=len(receiver.requests),
                   redis_bytes=len(haystacks["Redis"]), aof_bytes=len(haystacks["append-only file"]))
    for quoted in (b"IAM is down: you sent body: ", b"token endpoint: you sent body: "):  # the retried mints
        assert quoted in haystacks["Redis"] and quoted in haystacks["worker log"]
    assert leaks(haystacks, secrets) == []


def _service_account(path: Path, token_uri: str) -> str:
    """Write a service-account file whose token endpoint is the sandbox's; return a line of its private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "acme", "private_key_id": "key-1",
                                "private_key": pem, "client_email": "syncbridge@acme.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": token_uri}))
    return pem.splitlines()[5]


def _minted_credentials(sandbox: SandboxServer) -> dict[str, str]:
    """Every credential minted during the run, read back from what the worker sent the sandbox."""
    found: dict[str, set[str]] = {"IAM token": set(), "Google access token": set(), "JWT assertion": set()}
    for call in requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]:
        headers = call["headers"]
        if call["provider"] == "codearts" and headers.get("X-Auth-Token"):
            found["IAM token"].add(headers["X-Auth-Token"])
        if call["provider"] == "google-csr" and headers.get("Authorization", "").startswith("Bearer "):
            found["Google access token"].add(headers["Authorization"].removeprefix("Bearer "))
        found["JWT assertion"].update(parse_qs(call["body"] or "").get("assertion", []))
    return {f"{kind} {index}": value for kind, values in found.items() for index, value in enumerate(sorted(values))}


NOTIFY_PATH_SECRET = "T0ABC/B0DEF/nq7Rk2Lm9Xw4Pz6Vt1Hs"
NOTIFY_QUERY_SECRET = "nkey-Qz8Wm2Xc5Vb1Jr3"


def test_a_notify_urls_credentials_never_appear_in_the_logs(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Chat and automation webhook URLs are credentials: whoever has one can post (Slack, Teams Workflows'
    ``sig=``, Zapier...). The README reads them from the environment like any secret. A refused
    notification is retried; neither its failure nor anything else may write the URL's secrets out."""
    notify_url = f"{receiver.url}/services/{NOTIFY_PATH_SECRET}?token={NOTIFY_QUERY_SECRET}"
    monkeypatch.setenv("NOTIFY_URL", notify_url)  # for write_config's check in this process
    config = write_config(tmp_path, mesa_config(sandbox.url) + """
        notify:
          - url: ${NOTIFY_URL}
            "on": [completed]
        """)
    receiver.answers = [500]  # refused once, then taken when RQ retries the send
    env = {"NOTIFY_URL": notify_url}
    with web_process(config, redis_server.url, tmp_path / "web.log", **env) as (url, _), \
            worker_process(config, redis_server.url, tmp_path / "worker.log", **env):
        body = push_body()
        job_id = requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, delivery="n-1"),
                               timeout=5).json()["jobs"][0]["id"]
        assert wait_done(url, job_id, 30)["status"] == "completed"
        until(lambda: [r["status"] for r in receiver.requests] == [500, 200], 30, what="the retried notification")
    logs = {"web log": (tmp_path / "web.log").read_bytes(), "worker log": (tmp_path / "worker.log").read_bytes()}
    found = leaks(logs, {"notify URL path secret": NOTIFY_PATH_SECRET, "notify URL token": NOTIFY_QUERY_SECRET})
    lines = [line for data in logs.values() for line in data.decode().splitlines() if NOTIFY_QUERY_SECRET in line]
    assert found == [], "\n".join(lines)
