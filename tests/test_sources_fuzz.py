"""Hypothesis against every host module: only the three documented errors, and nothing unsigned verifies.

Two properties. Unsigned: whatever the body and headers (including well-formed signatures that
were simply not made with our secret), verify raises Unauthorized. Signed: for a correctly signed
body, random or a mutated copy of one of our fixtures, verify-then-parse returns a Push, Ping or
Ignored, or raises Unauthorized / BadPayload / UnsupportedMediaType, never anything else; and a
Push it returns is well formed.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sources import FIXTURES, FORM, HOSTS, IGNORED, JSON, PINGS, PUSH_FIXTURE, PUSHES, SECRET, signed
from werkzeug.datastructures import Headers

from bridge.events import BadPayload, Ignored, Ping, Push, Unauthorized, UnsupportedMediaType
from bridge.sources.payloads import media_type

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (Unauthorized, BadPayload, UnsupportedMediaType)
KINDS = sorted(HOSTS)
NOW = int(time.time())

SIGNATURE_HEADERS = ["X-Hub-Signature-256", "X-Hub-Signature", "X-Gitea-Signature", "X-Forgejo-Signature",
                     "X-Gitlab-Token", "webhook-signature", "webhook-id", "webhook-timestamp"]
OTHER_HEADERS = ["Content-Type", "X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event",
                 "X-Event-Key", "Idempotency-Key", "X-Request-Id", "X-Request-UUID"]
HOST_EVENTS = {
    "github": ["push", "ping", "issues"],
    "gitlab": ["Push Hook", "Tag Push Hook", "System Hook", "Merge Request Hook"],
    "gitea": ["push", "delete", "create"],
    "forgejo": ["push", "delete", "create"],
    "bitbucket-server": ["repo:refs_changed", "diagnostics:ping", "pr:opened"],
    "bitbucket-cloud": ["repo:push", "pullrequest:created"],
}
JSON_TYPES = [JSON, "application/json; charset=utf-8", "Application/JSON"]
OTHER_TYPES = [FORM, "text/plain", "", "application/xml"]

header_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
b64_32 = st.binary(min_size=32, max_size=32).map(lambda raw: base64.b64encode(raw).decode())
# Well-formed values for every signature header: they must be refused because they are unsigned,
# not because they are malformed.
plausible = {
    "X-Hub-Signature-256": hex64.map("sha256={}".format),
    "X-Hub-Signature": hex64.map("sha256={}".format),
    "X-Gitea-Signature": hex64,
    "X-Forgejo-Signature": hex64,
    "X-Gitlab-Token": header_text.filter(lambda t: t and t.encode() != SECRET),
    "webhook-signature": st.lists(b64_32.map("v1,{}".format), min_size=1, max_size=3).map(" ".join),
    "webhook-id": st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    "webhook-timestamp": st.integers(NOW - 200, NOW + 200).map(str),
}


@st.composite
def unsigned_headers(draw: st.DrawFn) -> Headers:
    headers = Headers()
    for name in draw(st.lists(st.sampled_from(SIGNATURE_HEADERS + OTHER_HEADERS), unique=True)):
        strategy = plausible.get(name, header_text) if draw(st.booleans()) else header_text
        headers[name] = draw(strategy)
    return headers


@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=2048), headers=unsigned_headers())
@FUZZ
def test_nothing_unsigned_verifies(kind: str, body: bytes, headers: Headers) -> None:
    try:
        HOSTS[kind].module.verify(headers, body, [SECRET])
    except Unauthorized:
        return
    raise AssertionError(f"{kind} accepted an unsigned delivery: {dict(headers)!r}")


@given(kind=st.sampled_from(KINDS), headers=unsigned_headers())
@FUZZ
def test_a_real_push_with_made_up_signatures_does_not_verify(kind: str, headers: Headers) -> None:
    body = (FIXTURES / kind / PUSH_FIXTURE[kind]).read_bytes()
    try:
        HOSTS[kind].module.verify(headers, body, [SECRET])
    except Unauthorized:
        return
    raise AssertionError(f"{kind} accepted an unsigned delivery: {dict(headers)!r}")


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20)
                | st.sampled_from(["refs/heads/main", "main", "0" * 40, "a" * 40, "b" * 64, "", "branch", "tag"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=12)
EXAMPLES = {kind: [(name, event) for k, name, event, *_ in PUSHES + IGNORED + PINGS if k == kind] for kind in KINDS}


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one to three subtrees replaced by random JSON or removed."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        node = document
        while isinstance(node, dict | list) and node:
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], dict | list) or not node[key] or draw(st.booleans()):
                if isinstance(node, dict) and draw(st.integers(0, 3)) == 0:
                    del node[key]
                else:
                    node[key] = draw(json_values)
                break
            node = node[key]
    return document


@st.composite
def signed_delivery(draw: st.DrawFn, kind: str) -> tuple[Headers, bytes]:
    """A correctly signed delivery: mostly a mutated fixture with its own event, sometimes anything."""
    if draw(st.integers(0, 4)) > 0:
        name, event = draw(st.sampled_from(EXAMPLES[kind]))
        document = json.dumps(draw(mutated(json.loads((FIXTURES / kind / name).read_bytes())))).encode()
        content_type = draw(st.sampled_from(JSON_TYPES))
    else:
        event = draw(st.sampled_from(HOST_EVENTS[kind]) | header_text.filter(bool))
        document = draw(st.binary(max_size=1024) | json_values.map(lambda value: json.dumps(value).encode()))
        content_type = draw(st.sampled_from(JSON_TYPES + OTHER_TYPES) | header_text)
    as_form = content_type == FORM and draw(st.booleans())
    body = urlencode({"payload": document}).encode() if as_form else document
    # Gitea and Forgejo sign the JSON inside a form body; everyone else signs the body.
    gitea_form = kind in ("gitea", "forgejo") and as_form
    headers = signed(kind, body, event=event, content_type=content_type,
                     signed_bytes=document if gitea_form else None)
    return headers, body


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@FUZZ
def test_verify_then_parse_raises_only_the_three_errors(kind: str, data: st.DataObject) -> None:
    headers, body = data.draw(signed_delivery(kind))
    module = HOSTS[kind].module
    try:
        module.verify(headers, body, [SECRET])
        result = module.parse(headers, body)
    except ALLOWED:
        return
    assert isinstance(result, Push | Ping | Ignored)
    if isinstance(result, Push) and kind != "github":  # github.py predates the shared ref checks
        assert isinstance(result.repo, str) and result.repo
        assert result.updates
        for update in result.updates:
            assert update.ref.startswith("refs/") and len(update.ref) > len("refs/")
            for sha in (update.before, update.after):
                assert len(sha) in (40, 64) and set(sha) <= set("0123456789abcdef")


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@FUZZ
def test_signed_bodies_always_verify(kind: str, data: st.DataObject) -> None:
    """The other half of the first property: our own signing is never refused (no false 401)."""
    headers, body = data.draw(signed_delivery(kind))
    if kind in ("gitea", "forgejo") and media_type(headers.get("Content-Type")) == FORM:
        return  # a random form body may carry no payload field: nothing signed, rightly refused
    HOSTS[kind].module.verify(headers, body, [SECRET])
