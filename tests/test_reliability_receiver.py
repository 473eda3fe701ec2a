"""Hypothesis against the whole HTTP receiver (Flask app, real Redis): no 5xx, no job without a valid signature.

tests/test_sources_fuzz.py fuzzes each host module's verify and parse; this goes through the app as
a host (or anyone) reaches it: the route, the source lookup, verify, parse, routing, the enqueue
script, the answer. Six sources, one per host kind, route every repository to one target, so any
push that verifies becomes a job. Properties, per request:

- never a 5xx;
- unsigned (no signature, a made-up one, or one made with another secret): 401 and nothing stored;
- signed: 200, 202, 400 or 415, and a 202 lists jobs that exist;
- the read routes (/jobs, /deliveries, /dashboard.json, /metrics, ...) with random paths and queries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from werkzeug.datastructures import Headers

from bridge.app import create_app
from bridge.config import load
from bridge.store import INDEX_KEY
from tests.test_reliability import record_numbers
from tests.test_sources import FIXTURES, FORM, HOSTS, IGNORED, JSON, OTHER_SECRET, PINGS, PUSHES, SECRET, signed

FUZZ = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
KINDS = sorted(HOSTS)
COUNTS: dict[str, Any] = {"unsigned": 0, "signed": 0, "read": 0, "signed_answers": {}}
EXAMPLES = {kind: [(name, event) for k, name, event, *_ in PUSHES + IGNORED + PINGS if k == kind] for kind in KINDS}
EVENTS = {"github": ["push", "ping", "issues"], "gitlab": ["Push Hook", "Tag Push Hook", "System Hook"],
          "gitea": ["push", "delete", "create"], "forgejo": ["push", "delete", "create"],
          "bitbucket-server": ["repo:refs_changed", "diagnostics:ping"], "bitbucket-cloud": ["repo:push"]}
SIGNATURE_HEADERS = ["X-Hub-Signature-256", "X-Hub-Signature", "X-Gitea-Signature", "X-Forgejo-Signature",
                     "X-Gitlab-Token", "webhook-signature", "webhook-id", "webhook-timestamp"]
OTHER_HEADERS = ["Content-Type", "X-GitHub-Event", "X-GitHub-Delivery", "X-Gitlab-Event", "X-Gitea-Event",
                 "X-Forgejo-Event", "X-Event-Key", "Idempotency-Key", "X-Request-Id", "X-Request-UUID",
                 "Content-Encoding", "Transfer-Encoding", "Authorization", "X-Forwarded-For", "X-Forwarded-Host"]
CONTENT_TYPES = [JSON, FORM, "application/json; charset=utf-8", "text/plain", "", "multipart/form-data; boundary=x"]

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=60)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12)
                           | st.sampled_from(["refs/heads/main", "0" * 40, "a" * 40, "acme/widgets"]),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=10)


@pytest.fixture
def client(tmp_path: Any, redis: Redis, request: pytest.FixtureRequest) -> Iterator[FlaskClient]:
    secret = SECRET.decode()
    sources = "".join(f"  {kind}: {{kind: {kind}, secret: '{secret}'}}\n" for kind in KINDS)
    routes = "".join(f"  - {{source: {kind}, repo: '**', targets: [mirror]}}\n" for kind in KINDS)
    path = tmp_path / "syncbridge.yml"
    path.write_text(f"sources:\n{sources}targets:\n  mirror: {{provider: mesa, base_url: 'http://127.0.0.1:9/v1', "
                    f"org: acme, repo: widgets, token: mirror-token}}\nroutes:\n{routes}")
    yield create_app(load(path), redis).test_client()
    record_numbers(request, f"receiver_fuzz_{request.node.name.removeprefix('test_')}", **COUNTS)


def post(client: FlaskClient, path: str, headers: Headers, body: bytes) -> Any:
    """POST exactly ``body``: given as ``data``, werkzeug's test client would build its own multipart body."""
    return client.post(path, input_stream=BytesIO(body), content_length=len(body), headers=headers)


def stored(redis: Redis) -> tuple[int, int]:
    """Jobs and deliveries in Redis: what an accepted delivery adds."""
    return redis.zcard(INDEX_KEY), len(redis.keys("syncbridge:delivery:*"))


@st.composite
def document(draw: st.DrawFn, kind: str) -> tuple[bytes, str]:
    """A body and event: a host's own fixture (sometimes with a subtree replaced), or anything."""
    if draw(st.booleans()):
        name, event = draw(st.sampled_from(EXAMPLES[kind]))
        data = json.loads((FIXTURES / kind / name).read_bytes())
        if draw(st.booleans()) and isinstance(data, dict) and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(json_values)
        return json.dumps(data).encode(), event
    body = draw(st.binary(max_size=600) | json_values.map(lambda value: json.dumps(value).encode()))
    return body, draw(st.sampled_from(EVENTS[kind]) | header_text)


@st.composite
def unsigned_request(draw: st.DrawFn) -> tuple[str, Headers, bytes]:
    kind = draw(st.sampled_from(KINDS))
    body, event = draw(document(kind))
    how = draw(st.sampled_from(["made-up", "other-secret", "signed-then-changed"]))
    if how == "made-up":
        headers = Headers({HOSTS[kind].event_header: event})
        for name in draw(st.lists(st.sampled_from(SIGNATURE_HEADERS + OTHER_HEADERS), unique=True, max_size=8)):
            headers[name] = draw(header_text)
    else:
        headers = signed(kind, body, event=event, secret=OTHER_SECRET if how == "other-secret" else SECRET,
                         delivery=draw(st.none() | header_text.filter(str.strip)))
        if how == "signed-then-changed":  # the right signature for other bytes
            body = body + draw(st.binary(min_size=1, max_size=4))
    return kind, headers, body


@st.composite
def signed_request(draw: st.DrawFn) -> tuple[str, Headers, bytes]:
    kind = draw(st.sampled_from(KINDS))
    document_bytes, event = draw(document(kind))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    as_form = content_type == FORM and draw(st.booleans())
    body = urlencode({"payload": document_bytes.decode("utf-8", "replace")}).encode() if as_form else document_bytes
    gitea_form = kind in ("gitea", "forgejo") and as_form  # they sign the JSON inside a form body
    headers = signed(kind, body, event=event, content_type=content_type,
                     delivery=draw(st.none() | st.text("abcdef0123456789-", min_size=1, max_size=36)),
                     signed_bytes=document_bytes if gitea_form and document_bytes.isascii() else None)
    for name in draw(st.lists(st.sampled_from(["X-Forwarded-For", "X-Request-Id", "User-Agent"]), max_size=2)):
        headers[name] = draw(header_text)
    return kind, headers, body


@given(case=unsigned_request(), wrong_source=st.booleans())
@FUZZ
def test_nothing_unsigned_is_stored_and_nothing_answers_5xx(
        client: FlaskClient, redis: Redis, case: tuple[str, Headers, bytes], wrong_source: bool) -> None:
    kind, headers, body = case
    before = stored(redis)
    path = f"/hooks/{kind}-nope" if wrong_source else f"/hooks/{kind}"
    answer = post(client, path, headers, body)
    COUNTS["unsigned"] += 1
    # A body that says it is compressed is refused for that (415) before its signature is looked at.
    encoded = str(headers.get("Content-Encoding", "")).strip().lower() not in ("", "identity")
    expected = 404 if wrong_source else 415 if encoded else 401
    assert answer.status_code == expected, (answer.status_code, answer.get_data()[:200])
    assert stored(redis) == before


@given(case=signed_request())
@FUZZ
def test_signed_deliveries_never_answer_5xx_and_202_means_stored(client: FlaskClient, redis: Redis,
                                                                 case: tuple[str, Headers, bytes]) -> None:
    kind, headers, body = case
    answer = post(client, f"/hooks/{kind}", headers, body)
    COUNTS["signed"] += 1
    COUNTS["signed_answers"][answer.status_code] = COUNTS["signed_answers"].get(answer.status_code, 0) + 1
    assert answer.status_code in (200, 202, 400, 401, 415), (answer.status_code, answer.get_data()[:300])
    if answer.status_code == 401:  # only a form body without its payload field: Gitea/Forgejo signed nothing
        assert kind in ("gitea", "forgejo") and headers.get("Content-Type") == FORM, answer.get_json()
    if answer.status_code == 202:
        for job in answer.get_json()["jobs"]:
            assert client.get(f"/jobs/{job['id']}").status_code == 200


segment = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="/?#%"), max_size=40)


@given(route=st.sampled_from(["/jobs/{}", "/deliveries/{}", "/jobs", "/dashboard.json", "/", "/metrics", "/{}",
                              "/hooks/{}", "/readyz", "/healthz", "/jobs/{}/retry"]),
       name=segment, query=st.dictionaries(st.sampled_from(["status", "target", "repo", "limit", "x"]),
                                           st.text(max_size=30) | st.integers().map(str), max_size=4),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
@FUZZ
def test_read_routes_never_answer_5xx(client: FlaskClient, route: str, name: str, query: dict[str, str],
                                      method: str) -> None:
    answer = client.open(route.format(name), method=method, query_string=query)
    COUNTS["read"] += 1
    assert answer.status_code < 500, (method, route.format(name), query, answer.get_data()[:300])


def test_the_fuzzed_deliveries_were_also_accepted(client: FlaskClient, redis: Redis) -> None:
    """A control: the fuzzing of signed deliveries above is meaningful only if well-formed ones are taken."""
    for kind in KINDS:
        name, event = next((n, e) for k, n, e, *_ in PUSHES if k == kind)
        body = (FIXTURES / kind / name).read_bytes()
        answer = client.post(f"/hooks/{kind}", data=body,
                             headers=signed(kind, body, event=event, delivery=f"control-{time.time_ns()}"))
        assert answer.status_code == 202, (kind, answer.get_json())
