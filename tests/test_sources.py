"""verify + parse of every host module on our own payloads (tests/fixtures/<kind>/).

The signing helpers at the top (HOSTS, signed, SCHEMES) are also what test_real_fixtures.py and
test_sources_fuzz.py use to sign bodies, so each host's wire format is written down once.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from bridge.events import (
    ZERO_SHA,
    BadPayload,
    Ignored,
    Ping,
    Push,
    RefUpdate,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.samples import signed_push
from bridge.sources import (
    SOURCES,
    bitbucket_cloud,
    bitbucket_server,
    forgejo,
    gitea,
    github,
    gitlab,
    payloads,
    signing,
)
from bridge.sources.signing import hmac_sha256, standard_webhooks_signature

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = b"correct horse battery staple"
OTHER_SECRET = b"an entirely different secret"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MSG_ID = "msg_2mZ8cQ0fX1rY7tLhVb3K"

# --------------------------------------------------------------------------------------------------
# How each host signs and labels a delivery


def hex_signer(header: str, prefix: str = "") -> Callable[[bytes, bytes, str | None], dict[str, str]]:
    """A host that sends ``<prefix><hex HMAC-SHA256 of the body>`` in ``header``."""
    return lambda body, secret, delivery: {header: prefix + hmac_sha256(secret, body).hex()}


def standard_webhooks(body: bytes, secret: bytes, *, msg_id: str = MSG_ID,
                      timestamp: int | None = None) -> dict[str, str]:
    """GitLab's Standard-Webhooks headers for ``body``, stamped now unless told otherwise."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": standard_webhooks_signature(secret, msg_id, stamp, body)}


def gitlab_token(body: bytes, secret: bytes) -> dict[str, str]:
    """GitLab's plain token: the secret itself, whatever the body."""
    return {"X-Gitlab-Token": secret.decode()}


@dataclass(frozen=True)
class Host:
    """What a test needs to fake one host's delivery."""

    module: ModuleType
    event_header: str
    delivery_header: str
    sign: Callable[[bytes, bytes, str | None], dict[str, str]]  # body, secret, delivery id


HOSTS: dict[str, Host] = {
    "github": Host(github, "X-GitHub-Event", "X-GitHub-Delivery",
                   hex_signer("X-Hub-Signature-256", "sha256=")),
    # GitLab's signed webhook-id is its Idempotency-Key: the delivery id
    "gitlab": Host(gitlab, "X-Gitlab-Event", "Idempotency-Key",
                   lambda body, secret, delivery: standard_webhooks(body, secret, msg_id=delivery or MSG_ID)),
    "gitea": Host(gitea, "X-Gitea-Event", "X-Gitea-Delivery", hex_signer("X-Gitea-Signature")),
    "forgejo": Host(forgejo, "X-Forgejo-Event", "X-Forgejo-Delivery", hex_signer("X-Forgejo-Signature")),
    "bitbucket-server": Host(bitbucket_server, "X-Event-Key", "X-Request-Id",
                             hex_signer("X-Hub-Signature", "sha256=")),
    "bitbucket-cloud": Host(bitbucket_cloud, "X-Event-Key", "X-Request-UUID",
                            hex_signer("X-Hub-Signature", "sha256=")),
}
DELIVERY = "5f0c1e2a-9b7d-4c3e-8a6f-1d2b3c4d5e6f"


def signed(kind: str, body: bytes, *, event: str, secret: bytes = SECRET, delivery: str | None = DELIVERY,
           content_type: str = JSON, signed_bytes: bytes | None = None) -> Headers:
    """The headers ``kind`` would send with ``body``; ``signed_bytes`` when the host signs something else."""
    host = HOSTS[kind]
    headers = Headers({"Content-Type": content_type, host.event_header: event})
    if delivery is not None:
        headers[host.delivery_header] = delivery
    for name, value in host.sign(body if signed_bytes is None else signed_bytes, secret, delivery).items():
        headers[name] = value
    return headers


def fixture(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / name).read_bytes()


def deliver(kind: str, name: str, event: str, **options: object):
    """Sign fixture ``name`` as ``kind`` sends it, verify it, and return what parse makes of it."""
    body = fixture(kind, name)
    headers = signed(kind, body, event=event, **options)  # type: ignore[arg-type]
    module = HOSTS[kind].module
    module.verify(headers, body, [SECRET])
    return module.parse(headers, body)


# --------------------------------------------------------------------------------------------------
# Registry


def test_registry_has_every_kind_of_the_interface() -> None:
    assert set(SOURCES) == {"github", "gitlab", "gitea", "forgejo", "bitbucket-server", "bitbucket-cloud"}
    for kind, module in SOURCES.items():
        assert kind == module.KIND
        assert callable(module.verify) and callable(module.parse)
    assert set(HOSTS) == set(SOURCES)


# --------------------------------------------------------------------------------------------------
# Pushes, pings and ignored events from our fixtures

A = "baba24aa0b7de482cf7219176d2ed3d934cb5046"
B = "63638a1c954852f6e81b21b97b261304a9885c17"
PUSHES = [
    ("github", "push.json", "push", "orbit-works/telescope", [("refs/heads/main", A, B)]),
    ("github", "push-tag.json", "push", "orbit-works/telescope", [("refs/tags/v2.4.0", ZERO_SHA, B)]),
    ("github", "push-delete.json", "push", "orbit-works/telescope",
     [("refs/heads/feature/old-ui", "c3bc29dd4a88af2972da11cddeea9bf3b5fc0caf", ZERO_SHA)]),
    ("gitlab", "push.json", "Push Hook", "port-ops/harbor-ledger",
     [("refs/heads/trunk", "d61b26d8042f625eff9c4a9e78312defb948774f",
       "26b6fd907598d714a8e9ab4181404e93df1af8b8")]),
    ("gitlab", "tag-push.json", "Tag Push Hook", "port-ops/harbor-ledger",
     [("refs/tags/release-2026.02", ZERO_SHA, "26b6fd907598d714a8e9ab4181404e93df1af8b8")]),
    ("gitlab", "push-delete.json", "Push Hook", "port-ops/harbor-ledger",
     [("refs/heads/spike/cranes", "8508d0d34995b2585b29cf276e3961a6f96cdc16", ZERO_SHA)]),
    ("gitlab", "system-push.json", "System Hook", "port-ops/harbor-ledger",
     [("refs/heads/hotfix/berth-7", "26b6fd907598d714a8e9ab4181404e93df1af8b8",
       "3a65cfe513d21ccb0d01b2d0ea901b083101d184")]),
    ("gitea", "push.json", "push", "stonecutters/chisel",
     [("refs/heads/main", "5c7311d4bdc82f5fa46d710d54e242ad00d8e9cb",
       "c24ca5f3e3a73a76c9aef7f558f8b8aa65af672e")]),
    ("gitea", "push-tag.json", "push", "stonecutters/chisel",
     [("refs/tags/v0.9.1", ZERO_SHA, "c24ca5f3e3a73a76c9aef7f558f8b8aa65af672e")]),
    ("gitea", "push-delete-tag.json", "push", "stonecutters/chisel",
     [("refs/tags/v0.9.0-rc1", "6b43930565767d6860ffec100fd3ce2974eb1231", ZERO_SHA)]),
    # Gitea sends no push when a branch is deleted, only this delete event with a short name.
    ("gitea", "delete-branch.json", "delete", "stonecutters/chisel",
     [("refs/heads/feature/moss", ZERO_SHA, ZERO_SHA)]),
    ("forgejo", "push.json", "push", "fernhill/seedbank",
     [("refs/heads/main", "2f84b7bc687799fd8c4f5191028c1a50250d879b",
       "825d06e19751cf7dcfe9ef08c54715edb87d4fae")]),
    ("forgejo", "push-tag.json", "push", "fernhill/seedbank",
     [("refs/tags/v0.9.1", ZERO_SHA, "825d06e19751cf7dcfe9ef08c54715edb87d4fae")]),
    ("forgejo", "push-delete-tag.json", "push", "fernhill/seedbank",
     [("refs/tags/v0.9.0-rc1", "28b8561e6a6d8bc6ca819e4aa007bd4552a9ef35", ZERO_SHA)]),
    # Forgejo-type hooks put the full ref name in delete events.
    ("forgejo", "delete-branch.json", "delete", "fernhill/seedbank",
     [("refs/heads/feature/moss", ZERO_SHA, ZERO_SHA)]),
    ("bitbucket-server", "refs-changed.json", "repo:refs_changed", "STRUCT/girder-calc",
     [("refs/heads/develop", "d4255bd44cacdd1e2d7d27a8aa94bc3ac8886216",
       "746df0ba69632673ec2680b6c30dc9dec3fae168"),
      ("refs/heads/feature/torsion", ZERO_SHA, "e9430ed1d9ef572de212c52592ec4dd7e4877f28")]),
    ("bitbucket-server", "refs-changed-tag.json", "repo:refs_changed", "STRUCT/girder-calc",
     [("refs/tags/v5.1.0", ZERO_SHA, "201e3b2824ffe7a487e9934faf2ed56835806858")]),
    ("bitbucket-server", "refs-changed-delete.json", "repo:refs_changed", "STRUCT/girder-calc",
     [("refs/heads/feature/shear", "aced464b5bf8b7ab9394923509dcee85372d2b28", ZERO_SHA)]),
    ("bitbucket-cloud", "repo-push.json", "repo:push", "kestrel-maps/tile-forge",
     [("refs/heads/master", "d3a6366acdd7c66352fbaaf8245ba5a2c22a0f82",
       "7c8673269362bc00dc7e6bfda01dd2fef351e079"),
      ("refs/heads/feature/hillshade", ZERO_SHA, "c1c4a4410c13c611a98dff205e154efdd4ada418")]),
    ("bitbucket-cloud", "repo-push-tag.json", "repo:push", "kestrel-maps/tile-forge",
     [("refs/tags/tiles-3.2", ZERO_SHA, "7c8673269362bc00dc7e6bfda01dd2fef351e079")]),
    ("bitbucket-cloud", "repo-push-delete.json", "repo:push", "kestrel-maps/tile-forge",
     [("refs/heads/feature/old-zoom", "2545222188de7daab269e0762026e6b62b8ac1e9", ZERO_SHA)]),
]
IGNORED = [
    ("github", "issues.json", "issues"),
    ("gitlab", "merge-request.json", "Merge Request Hook"),
    ("gitlab", "system-repository-update.json", "System Hook"),  # would double the system push's jobs
    ("gitea", "create.json", "create"),  # the push event for the same ref carries it
    ("gitea", "delete-tag.json", "delete"),  # tag deletions also come as a push
    ("gitea", "issues.json", "issues"),
    ("forgejo", "create.json", "create"),
    ("forgejo", "delete-tag.json", "delete"),
    ("forgejo", "issues.json", "issues"),
    ("bitbucket-server", "pr-opened.json", "pr:opened"),
    ("bitbucket-cloud", "pullrequest-created.json", "pullrequest:created"),
]
PINGS = [
    ("github", "ping.json", "ping"),
    ("gitea", "test-delivery.json", "push"),  # "Test delivery": a push with before == after
    ("forgejo", "test-delivery.json", "push"),
    ("bitbucket-server", "diagnostics-ping.json", "diagnostics:ping"),
]


@pytest.mark.parametrize(("kind", "name", "event", "repo", "updates"), PUSHES,
                         ids=[f"{c[0]}/{c[1]}" for c in PUSHES])
def test_push_is_normalized(kind: str, name: str, event: str, repo: str,
                            updates: list[tuple[str, str, str]]) -> None:
    assert deliver(kind, name, event) == Push(
        repo=repo, updates=tuple(RefUpdate(*update) for update in updates), delivery=DELIVERY)


@pytest.mark.parametrize(("kind", "name", "event"), IGNORED, ids=[f"{c[0]}/{c[1]}" for c in IGNORED])
def test_non_push_event_is_ignored(kind: str, name: str, event: str) -> None:
    result = deliver(kind, name, event)
    assert isinstance(result, Ignored)
    assert result.delivery == DELIVERY


@pytest.mark.parametrize(("kind", "name", "event"), PINGS, ids=[f"{c[0]}/{c[1]}" for c in PINGS])
def test_ping_is_ping(kind: str, name: str, event: str) -> None:
    assert deliver(kind, name, event) == Ping(DELIVERY)


def test_every_fixture_has_an_expectation() -> None:
    covered = {(c[0], c[1]) for c in PUSHES} | {(c[0], c[1]) for c in IGNORED + PINGS}
    on_disk = {(path.parent.name, path.name) for path in FIXTURES.glob("*/*.json")}
    assert on_disk == covered


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_tags_and_deletions_are_pushes(kind: str) -> None:
    pushes = [deliver(k, name, event) for k, name, event, _, _ in PUSHES if k == kind]
    refs = [update for push in pushes for update in push.updates]
    assert any(update.is_tag for update in refs)
    assert any(update.after == ZERO_SHA for update in refs)


@pytest.mark.parametrize("kind", sorted(set(HOSTS) - {"gitlab"}))  # a signed GitLab delivery always has its id
def test_missing_delivery_header_gives_none(kind: str) -> None:
    name, event = next((c[1], c[2]) for c in PUSHES if c[0] == kind)
    assert deliver(kind, name, event, delivery=None).delivery is None


# --------------------------------------------------------------------------------------------------
# Signatures: the same tampering matrix for every host that signs the body


@dataclass(frozen=True)
class Scheme:
    """One way of signing the body, with the malformed variants of its header."""

    kind: str
    header: str
    prefix: str
    wrong_prefix: Callable[[str], str]
    wrong_length: Callable[[str], str]
    not_encoded: Callable[[str], str]


def _hex_scheme(kind: str, header: str, prefix: str) -> Scheme:
    other = "sha1=" if prefix else "sha256="
    return Scheme(kind, header, prefix,
                  wrong_prefix=lambda value: other + value[len(prefix):],
                  wrong_length=lambda value: value[:-2],
                  not_encoded=lambda value: value[:-1] + "g")


SCHEMES = [
    _hex_scheme("github", "X-Hub-Signature-256", "sha256="),
    _hex_scheme("gitea", "X-Gitea-Signature", ""),
    _hex_scheme("forgejo", "X-Forgejo-Signature", ""),
    _hex_scheme("bitbucket-server", "X-Hub-Signature", "sha256="),
    _hex_scheme("bitbucket-cloud", "X-Hub-Signature", "sha256="),
    Scheme("gitlab", "webhook-signature", "v1,",
           wrong_prefix=lambda value: "v2" + value[2:],
           wrong_length=lambda value: "v1," + base64.b64encode(base64.b64decode(value[3:])[:-1]).decode(),
           not_encoded=lambda value: value[:-2] + "!="),
]
EVENTS = {"github": "push", "gitlab": "Push Hook", "gitea": "push", "forgejo": "push",
          "bitbucket-server": "repo:refs_changed", "bitbucket-cloud": "repo:push"}
PUSH_FIXTURE = {kind: next(c[1] for c in PUSHES if c[0] == kind) for kind in HOSTS}


def _flip_one_byte(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1:]


TAMPERINGS: dict[str, Callable[[Scheme, Headers, bytes], tuple[Headers, bytes]]] = {
    "one body byte changed": lambda s, h, b: (h, _flip_one_byte(b)),
    "body truncated": lambda s, h, b: (h, b[:-1]),
    "body extended": lambda s, h, b: (h, b + b" "),
    "header missing": lambda s, h, b: (_without(h, s.header), b),
    "header empty": lambda s, h, b: (_with(h, s.header, ""), b),
    "wrong prefix": lambda s, h, b: (_with(h, s.header, s.wrong_prefix(h[s.header])), b),
    "wrong length": lambda s, h, b: (_with(h, s.header, s.wrong_length(h[s.header])), b),
    "too long": lambda s, h, b: (_with(h, s.header, h[s.header] + "00"), b),
    "not hex or base64": lambda s, h, b: (_with(h, s.header, s.not_encoded(h[s.header])), b),
    "only the prefix": lambda s, h, b: (_with(h, s.header, s.prefix), b),
}


def _with(headers: Headers, name: str, value: str) -> Headers:
    copy = headers.copy()
    copy[name] = value
    return copy


def _without(headers: Headers, name: str) -> Headers:
    copy = headers.copy()
    copy.remove(name)
    return copy


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s.kind for s in SCHEMES])
@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_tampered_delivery_is_unauthorized(scheme: Scheme, tampering: str) -> None:
    body = fixture(scheme.kind, PUSH_FIXTURE[scheme.kind])
    headers, body = TAMPERINGS[tampering](scheme, signed(scheme.kind, body, event=EVENTS[scheme.kind]), body)
    with pytest.raises(Unauthorized):
        HOSTS[scheme.kind].module.verify(headers, body, [SECRET])


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_valid_signature_verifies(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    HOSTS[kind].module.verify(signed(kind, body, event=EVENTS[kind]), body, [SECRET])


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_wrong_secret_is_unauthorized(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    with pytest.raises(Unauthorized):
        HOSTS[kind].module.verify(signed(kind, body, event=EVENTS[kind], secret=OTHER_SECRET), body, [SECRET])


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_second_of_two_secrets_verifies(kind: str) -> None:
    """A rotation: the host already signs with the new secret while the old one is still accepted."""
    body = fixture(kind, PUSH_FIXTURE[kind])
    headers = signed(kind, body, event=EVENTS[kind], secret=OTHER_SECRET)
    HOSTS[kind].module.verify(headers, body, [SECRET, OTHER_SECRET])


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_no_secret_or_an_empty_one_never_verifies(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    module = HOSTS[kind].module
    with pytest.raises(Unauthorized):
        module.verify(signed(kind, body, event=EVENTS[kind]), body, [])
    with pytest.raises(Unauthorized):  # anyone can compute an HMAC (or send a token) with an empty key
        module.verify(signed(kind, body, event=EVENTS[kind], secret=b""), body, [b""])


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_header_names_are_case_insensitive(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    headers = Headers([(name.lower(), value) for name, value in signed(kind, body, event=EVENTS[kind]).items()])
    HOSTS[kind].module.verify(headers, body, [SECRET])
    assert isinstance(HOSTS[kind].module.parse(headers, body), Push)


GITHUB_VECTOR_SECRET = b"It's a Secret to Everybody"
GITHUB_VECTOR_BODY = b"Hello, World!"
GITHUB_VECTOR_HEX = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_published_test_vector() -> None:
    assert hmac_sha256(GITHUB_VECTOR_SECRET, GITHUB_VECTOR_BODY).hex() == GITHUB_VECTOR_HEX
    github.verify(Headers({"X-Hub-Signature-256": f"sha256={GITHUB_VECTOR_HEX}"}), GITHUB_VECTOR_BODY,
                  [GITHUB_VECTOR_SECRET])
    with pytest.raises(Unauthorized):
        github.verify(Headers({"X-Hub-Signature-256": f"sha256={GITHUB_VECTOR_HEX}"}), b"Hello, World?",
                      [GITHUB_VECTOR_SECRET])


@pytest.mark.parametrize(("module", "header", "value"), [
    (gitea, "X-Gitea-Signature", GITHUB_VECTOR_HEX),
    (forgejo, "X-Forgejo-Signature", GITHUB_VECTOR_HEX),
    (bitbucket_server, "X-Hub-Signature", f"sha256={GITHUB_VECTOR_HEX}"),
    (bitbucket_cloud, "X-Hub-Signature", f"sha256={GITHUB_VECTOR_HEX}"),
    (bitbucket_cloud, "X-Hub-Signature", f"sha256={GITHUB_VECTOR_HEX.upper()}"),
], ids=["gitea", "forgejo", "bitbucket-server", "bitbucket-cloud", "upper-case hex"])
def test_the_vector_under_other_hosts_headers(module: ModuleType, header: str, value: str) -> None:
    module.verify(Headers({header: value}), GITHUB_VECTOR_BODY, [GITHUB_VECTOR_SECRET])


def test_github_signature_header_is_not_gitea_s() -> None:
    """Gitea also sends X-Hub-Signature-256, but the gitea module reads its own header only."""
    headers = Headers({"X-Hub-Signature-256": f"sha256={GITHUB_VECTOR_HEX}"})
    with pytest.raises(Unauthorized):
        gitea.verify(headers, GITHUB_VECTOR_BODY, [GITHUB_VECTOR_SECRET])


def test_forgejo_reads_its_own_signature_header_and_gitea_its_own() -> None:
    body = fixture("forgejo", "push.json")
    with pytest.raises(Unauthorized):
        forgejo.verify(signed("gitea", body, event="push"), body, [SECRET])
    with pytest.raises(Unauthorized):
        gitea.verify(signed("forgejo", body, event="push"), body, [SECRET])


# --------------------------------------------------------------------------------------------------
# GitLab: the token form and the Standard-Webhooks form


def _gitlab_headers(**extra: str) -> Headers:
    return Headers({"Content-Type": JSON, "X-Gitlab-Event": "Push Hook", **extra})


def test_gitlab_token_verifies() -> None:
    body = fixture("gitlab", "push.json")
    gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET)), body, [SECRET])
    gitlab.verify(_gitlab_headers(**gitlab_token(body, OTHER_SECRET)), body, [SECRET, OTHER_SECRET])


@pytest.mark.parametrize("token", [
    OTHER_SECRET.decode(), SECRET.decode()[:-1], SECRET.decode() + "x", SECRET.decode().upper(), " " * 28,
])
def test_gitlab_wrong_token_is_unauthorized(token: str) -> None:
    body = fixture("gitlab", "push.json")
    with pytest.raises(Unauthorized):
        gitlab.verify(_gitlab_headers(**{"X-Gitlab-Token": token}), body, [SECRET])


def test_gitlab_without_token_or_signature_is_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="missing"):
        gitlab.verify(_gitlab_headers(), fixture("gitlab", "push.json"), [SECRET])


def test_gitlab_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = signing.stdlib_hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.stdlib_hmac, "compare_digest", spy)
    gitlab.verify(_gitlab_headers(**{"X-Gitlab-Token": SECRET.decode()}), b"{}", [OTHER_SECRET, SECRET])
    assert compared == [(SECRET, OTHER_SECRET), (SECRET, SECRET)]  # every secret, no early exit


def test_gitlab_non_ascii_token_compares_as_wire_bytes() -> None:
    secret = "pässwörd".encode()
    wire = secret.decode("latin-1")  # what WSGI hands over for the UTF-8 bytes GitLab sent
    gitlab.verify(_gitlab_headers(**{"X-Gitlab-Token": wire}), b"{}", [secret])


def test_gitlab_token_does_not_cover_the_body() -> None:
    """A known limit of GitLab's plain token: prefer a signing token where the instance has one."""
    gitlab.verify(_gitlab_headers(**gitlab_token(b"", SECRET)), b"anything at all", [SECRET])


def test_gitlab_either_form_is_enough() -> None:
    body = fixture("gitlab", "push.json")
    good_signature = standard_webhooks(body, SECRET)
    gitlab.verify(_gitlab_headers(**{"X-Gitlab-Token": "stale"}, **good_signature), body, [SECRET])
    bad_signature = {**good_signature, "webhook-signature": "v1,AAAA"}
    gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET), **bad_signature), body, [SECRET])


SIGNING_TOKEN = b"whsec_" + base64.b64encode(bytes(range(32)))


def test_gitlab_with_a_signing_token_configured_the_plain_token_is_not_enough() -> None:
    """Otherwise a captured request would replay forever, outside the signature's five minutes."""
    body = fixture("gitlab", "push.json")
    secrets = [SECRET, SIGNING_TOKEN]  # mid-rotation: the old token and the new signing token
    with pytest.raises(Unauthorized, match="signing token"):
        gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET)), body, secrets)
    stale = standard_webhooks(body, SIGNING_TOKEN, timestamp=int(time.time()) - 600)
    with pytest.raises(Unauthorized, match="away from now"):
        gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET), **stale), body, secrets)
    forged = {**standard_webhooks(body, SIGNING_TOKEN), "webhook-signature": "v1,AAAA"}
    with pytest.raises(Unauthorized):
        gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET), **forged), body, secrets)
    keyed_by_the_token = standard_webhooks(body, SECRET)  # the plain token travels in clear: it cannot sign
    with pytest.raises(Unauthorized, match="does not match"):
        gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET), **keyed_by_the_token), body, secrets)
    gitlab.verify(_gitlab_headers(**gitlab_token(body, SECRET), **standard_webhooks(body, SIGNING_TOKEN)), body,
                  secrets)


def test_send_test_signs_gitlab_pushes_with_the_signing_token_when_there_is_one() -> None:
    from bridge.samples import signed_push, signing_secret

    secret = signing_secret("gitlab", [SECRET, SIGNING_TOKEN])
    headers, body = signed_push("gitlab", "acme/widgets", "refs/heads/main", A, B, secret)
    assert "X-Gitlab-Token" not in headers  # a signing token never travels in clear
    gitlab.verify(Headers(headers), body, [SECRET, SIGNING_TOKEN])
    assert gitlab.parse(Headers(headers), body).delivery == headers["webhook-id"]


@pytest.mark.parametrize("age", [-290, 0, 290])
def test_standard_webhooks_timestamp_within_five_minutes_verifies(age: int) -> None:
    body = fixture("gitlab", "push.json")
    headers = _gitlab_headers(**standard_webhooks(body, SECRET, timestamp=int(time.time()) - age))
    gitlab.verify(headers, body, [SECRET])


@pytest.mark.parametrize("age", [-310, 310, 86_400])
def test_standard_webhooks_timestamp_outside_five_minutes_is_unauthorized(age: int) -> None:
    body = fixture("gitlab", "push.json")
    headers = _gitlab_headers(**standard_webhooks(body, SECRET, timestamp=int(time.time()) - age))
    with pytest.raises(Unauthorized, match="away from now"):
        gitlab.verify(headers, body, [SECRET])


@pytest.mark.parametrize(("name", "value"), [
    ("webhook-id", "msg_someone_else"),
    ("webhook-timestamp", str(int(time.time()) - 1)),
    ("webhook-timestamp", "soon"),
    ("webhook-timestamp", "".join(chr(0xFF10 + int(d)) for d in str(int(time.time())))),  # full-width now
    ("webhook-timestamp", "9" * 40),
    ("webhook-signature", "v1a,ZmFrZSBlZDI1NTE5IHNpZ25hdHVyZQ=="),
])
def test_standard_webhooks_altered_headers_are_unauthorized(name: str, value: str) -> None:
    body = fixture("gitlab", "push.json")
    headers = _gitlab_headers(**standard_webhooks(body, SECRET))
    headers[name] = value
    with pytest.raises(Unauthorized):
        gitlab.verify(headers, body, [SECRET])


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp"])
def test_standard_webhooks_missing_header_is_unauthorized(name: str) -> None:
    body = fixture("gitlab", "push.json")
    headers = _gitlab_headers(**standard_webhooks(body, SECRET))
    headers.remove(name)
    with pytest.raises(Unauthorized, match="missing"):
        gitlab.verify(headers, body, [SECRET])


def test_standard_webhooks_any_of_several_signatures() -> None:
    body = fixture("gitlab", "push.json")
    headers = _gitlab_headers(**standard_webhooks(body, SECRET))
    good = headers["webhook-signature"]
    other = standard_webhooks(body, OTHER_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"v1a,c2lnbmVk v1,!!! {other} {good}"
    gitlab.verify(headers, body, [SECRET])


def test_standard_webhooks_whsec_secret_is_a_base64_key() -> None:
    key = bytes(range(32))
    secret = b"whsec_" + base64.b64encode(key)
    body = fixture("gitlab", "push.json")
    stamp = str(int(time.time()))
    digest = base64.b64encode(hmac_sha256(key, f"{MSG_ID}.{stamp}.".encode() + body)).decode()
    headers = _gitlab_headers(**{"webhook-id": MSG_ID, "webhook-timestamp": stamp,
                                 "webhook-signature": f"v1,{digest}"})
    gitlab.verify(headers, body, [secret])
    with pytest.raises(Unauthorized):  # another key
        gitlab.verify(headers, body, [b"whsec_" + base64.b64encode(bytes(32))])


def test_standard_webhooks_signing_is_what_the_spec_says() -> None:
    """The example of the Standard Webhooks reference libraries."""
    secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_webhooks_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body) == expected
    signing.verify_standard_webhook(
        Headers({"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                 "webhook-signature": expected}), body, [secret], now=1614265330)


def test_gitlab_delivery_prefers_the_signed_webhook_id_then_idempotency_key() -> None:
    body = fixture("gitlab", "push.json")
    both = Headers({"Content-Type": JSON, "X-Gitlab-Event": "Push Hook", "Idempotency-Key": "idem-1",
                    "X-Gitlab-Event-UUID": "event-1", "webhook-id": "msg-1"})
    assert gitlab.parse(both, body).delivery == "msg-1"
    both.remove("webhook-id")
    assert gitlab.parse(both, body).delivery == "idem-1"
    both.remove("Idempotency-Key")
    assert gitlab.parse(both, body).delivery == "event-1"
    both.remove("X-Gitlab-Event-UUID")
    assert gitlab.parse(both, body).delivery is None


def test_gitlab_system_hook_other_than_push_is_ignored() -> None:
    headers = Headers({"Content-Type": JSON, "X-Gitlab-Event": "System Hook"})
    for payload in ({"event_name": "project_create"}, {"object_kind": "merge_request"}, {"event_name": ["push"]}):
        assert isinstance(gitlab.parse(headers, json.dumps(payload).encode()), Ignored)


# --------------------------------------------------------------------------------------------------
# Form bodies: GitHub signs the raw form, Gitea and Forgejo the JSON inside it


@pytest.mark.parametrize("kind", ["gitea", "forgejo"])
def test_gitea_form_body_is_signed_over_its_payload_field(kind: str) -> None:
    payload = fixture(kind, "push.json")
    body = urlencode({"payload": payload.decode()}).encode()
    module = HOSTS[kind].module
    headers = signed(kind, body, event="push", content_type=FORM, signed_bytes=payload)
    module.verify(headers, body, [SECRET])
    assert module.parse(headers, body) == deliver(kind, "push.json", "push")
    with pytest.raises(Unauthorized):  # GitHub's way, signing the raw form body, is not Gitea's
        module.verify(signed(kind, body, event="push", content_type=FORM), body, [SECRET])


@pytest.mark.parametrize("body", [b"", b"other=1", b"payload=%7B%7D&payload=%7B%7D", b"payload"])
def test_gitea_form_without_exactly_one_payload_is_unauthorized(body: bytes) -> None:
    headers = signed("gitea", body, event="push", content_type=FORM, signed_bytes=b"{}")
    with pytest.raises(Unauthorized):
        gitea.verify(headers, body, [SECRET])


def test_gitea_form_payload_keeps_non_ascii_bytes_exactly() -> None:
    payload = json.dumps({"ref": "refs/heads/main", "message": "Żółw ☃"}, ensure_ascii=False).encode()
    body = urlencode({"payload": payload}).encode()
    assert payloads.form_payload(body) == payload
    gitea.verify(signed("gitea", body, event="push", content_type=FORM, signed_bytes=payload), body, [SECRET])


def test_github_form_body_is_signed_raw() -> None:
    payload = fixture("github", "push.json")
    body = urlencode({"payload": payload.decode()}).encode()
    headers = signed("github", body, event="push", content_type=FORM)
    github.verify(headers, body, [SECRET])
    assert github.parse(headers, body) == deliver("github", "push.json", "push")


# --------------------------------------------------------------------------------------------------
# Bodies that are verified but not the host's format


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize("content_type", ["text/plain", "", "application/xml", "multipart/form-data"])
def test_wrong_content_type_is_unsupported(kind: str, content_type: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    with pytest.raises(UnsupportedMediaType):
        HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind], content_type=content_type), body)


@pytest.mark.parametrize("kind", ["gitlab", "bitbucket-server", "bitbucket-cloud"])
def test_form_body_is_unsupported_where_the_host_never_sends_one(kind: str) -> None:
    body = urlencode({"payload": fixture(kind, PUSH_FIXTURE[kind]).decode()}).encode()
    with pytest.raises(UnsupportedMediaType):
        HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind], content_type=FORM), body)


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_json_content_type_with_charset_is_json(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    headers = signed(kind, body, event=EVENTS[kind], content_type="Application/JSON; charset=UTF-8")
    assert isinstance(HOSTS[kind].module.parse(headers, body), Push)


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize("body", [b"not json", b"{", b"[1, 2]", b'"push"', b"\xff\xfe{}", b"[" * 100_000],
                         ids=["text", "truncated", "array", "string", "bad utf-8", "deeply nested"])
def test_garbage_json_is_bad_payload(kind: str, body: bytes) -> None:
    headers = signed(kind, body, event=EVENTS[kind])
    HOSTS[kind].module.verify(headers, body, [SECRET])
    with pytest.raises(BadPayload):
        HOSTS[kind].module.parse(headers, body)


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize("payload", [
    {},
    {"ref": "refs/heads/main", "before": ZERO_SHA, "after": B},
    {"repository": [], "project": None, "changes": [{}], "push": {"changes": [None]}},
    {"ref": 1, "before": None, "after": [], "changes": "all", "push": []},
], ids=["empty", "no repo", "wrong containers", "wrong types"])
def test_push_event_without_a_push_is_bad_payload(kind: str, payload: dict) -> None:
    body = json.dumps(payload).encode()
    with pytest.raises(BadPayload):
        HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind]), body)


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_missing_event_header_is_bad_payload(kind: str) -> None:
    body = fixture(kind, PUSH_FIXTURE[kind])
    headers = _without(signed(kind, body, event=EVENTS[kind]), HOSTS[kind].event_header)
    with pytest.raises(BadPayload, match="missing"):
        HOSTS[kind].module.parse(headers, body)


@pytest.mark.parametrize("kind", ["gitlab", "gitea", "forgejo", "bitbucket-server", "bitbucket-cloud"])
@pytest.mark.parametrize(("field", "value"), [
    ("after", "c24ca5f"), ("after", ""), ("after", "z" * 40), ("before", "0" * 39), ("ref", "main"),
    ("ref", "refs/"),
])
def test_malformed_ref_or_sha_is_bad_payload(kind: str, field: str, value: str) -> None:
    body = _with_first_change(kind, field, value)
    with pytest.raises(BadPayload):
        HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind]), body)


def _with_first_change(kind: str, field: str, value: str) -> bytes:
    """The host's push fixture with one field of its first ref change replaced."""
    payload = json.loads(fixture(kind, PUSH_FIXTURE[kind]))
    if kind == "bitbucket-server":
        change = payload["changes"][0]
        key = {"ref": "refId", "before": "fromHash", "after": "toHash"}[field]
        change[key] = value
    elif kind == "bitbucket-cloud":
        change = payload["push"]["changes"][0]
        side = {"before": "old", "after": "new", "ref": "new"}[field]
        if field == "ref":
            change["new"]["type"] = value or "branch"
        else:
            change[side]["target"]["hash"] = value
    else:
        payload[field] = value
    return json.dumps(payload).encode()


def test_sha256_object_ids_are_accepted() -> None:
    """Gitea, Forgejo and GitLab can host SHA-256 repositories: 64-character ids, 64 zeros on delete."""
    payload = json.loads(fixture("gitea", "push.json"))
    payload["before"], payload["after"] = "a" * 64, "0" * 64
    body = json.dumps(payload).encode()
    push = gitea.parse(signed("gitea", body, event="push"), body)
    assert push.updates == (RefUpdate("refs/heads/main", "a" * 64, "0" * 64),)


def test_bitbucket_server_ping_without_signature_is_unauthorized() -> None:
    body = fixture("bitbucket-server", "diagnostics-ping.json")
    headers = Headers({"Content-Type": JSON, "X-Event-Key": "diagnostics:ping", "X-Request-Id": DELIVERY})
    with pytest.raises(Unauthorized, match="missing"):
        bitbucket_server.verify(headers, body, [SECRET])


def test_bitbucket_server_reads_ref_id_when_ref_id_field_is_absent() -> None:
    payload = json.loads(fixture("bitbucket-server", "refs-changed-tag.json"))
    del payload["changes"][0]["refId"]
    body = json.dumps(payload).encode()
    push = bitbucket_server.parse(signed("bitbucket-server", body, event="repo:refs_changed"), body)
    assert push.updates[0].ref == "refs/tags/v5.1.0"


@pytest.mark.parametrize(("change", "match"), [
    ({"old": None, "new": None}, "neither"),
    ({"old": None, "new": {"type": "bookmark", "name": "x", "target": {"hash": B}}}, "unknown type"),
    ("not a change", "not an object"),
])
def test_bitbucket_cloud_odd_changes_are_bad_payload(change: object, match: str) -> None:
    payload = json.loads(fixture("bitbucket-cloud", "repo-push.json"))
    payload["push"]["changes"] = [change]
    body = json.dumps(payload).encode()
    with pytest.raises(BadPayload, match=match):
        bitbucket_cloud.parse(signed("bitbucket-cloud", body, event="repo:push"), body)


def _bitbucket_push_with_changes(kind: str, changes: object) -> bytes:
    payload = json.loads(fixture(kind, PUSH_FIXTURE[kind]))
    if kind == "bitbucket-server":
        payload["changes"] = changes
    else:
        payload["push"]["changes"] = changes
    return json.dumps(payload).encode()


@pytest.mark.parametrize("kind", ["bitbucket-server", "bitbucket-cloud"])
def test_bitbucket_push_with_an_empty_change_list_is_ignored(kind: str) -> None:
    """Atlassian documents pushes that change no ref (e.g. after a merged pull request)."""
    body = _bitbucket_push_with_changes(kind, [])
    event = HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind]), body)
    assert event == Ignored("no ref changed", event.delivery)


@pytest.mark.parametrize("kind", ["bitbucket-server", "bitbucket-cloud"])
@pytest.mark.parametrize("changes", [None, {}, "main"])
def test_bitbucket_push_without_a_change_list_is_bad_payload(kind: str, changes: object) -> None:
    body = _bitbucket_push_with_changes(kind, changes)
    with pytest.raises(BadPayload, match="changes"):
        HOSTS[kind].module.parse(signed(kind, body, event=EVENTS[kind]), body)


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/tags/v1.0"])
def test_send_test_samples_verify_and_parse_as_their_host(kind: str, ref: str) -> None:
    """`syncbridge send-test` builds pushes that each host module accepts as its own."""
    repo = "ACME/widgets" if kind == "bitbucket-server" else "acme/widgets"
    headers, body = signed_push(kind, repo, ref, A, B, SECRET)
    module = HOSTS[kind].module
    module.verify(Headers(headers), body, [SECRET])
    event = module.parse(Headers(headers), body)
    assert isinstance(event, Push) and event.repo == repo and event.delivery
    assert [(u.ref, u.before, u.after) for u in event.updates] == [(ref, A, B)]


# --------------------------------------------------------------------------------------------------
# Refs git would refuse, and control characters anywhere: a 400 with the reason, on every host

_REPOS = {kind: "ACME/widgets" if kind == "bitbucket-server" else "acme/widgets" for kind in HOSTS}
FORGED = "\n2030-01-01 00:00:00,000 INFO syncbridge.worker: job=forged target=widgets completed"
BAD_REFS = [  # (ref, the reason's words), one per rule of git-check-ref-format(1)
    ("refs/heads/main" + FORGED, "control character"),
    ("refs/heads/a\rb", "control character"),
    ("refs/heads/a\x7fb", "control character"),
    ("refs/heads/two words", "space"),
    ("refs/heads/a~1", "'~'"),
    ("refs/heads/a^", "'^'"),
    ("refs/heads/a:b", "':'"),
    ("refs/heads/what?", "'?'"),
    ("refs/heads/feat*", "'*'"),
    ("refs/heads/[x]", "'['"),
    ("refs/heads/a\\b", r"'\\'"),
    ("refs/heads/a..b", "'..'"),
    ("refs/heads/a@{1}", "'@{'"),
    ("refs/heads/main.", "ends with '.'"),
    ("refs/heads/main/", "ends with '/'"),
    ("refs/heads//main", "empty component"),
    ("refs/heads/.hidden", "starts with '.'"),
    ("refs/heads/x/.y/z", "starts with '.'"),
    ("refs/heads/main.lock", "ends with '.lock'"),
    ("refs/heads/a.lock/b", "ends with '.lock'"),
]


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize(("ref", "reason"), BAD_REFS, ids=[repr(ref)[-14:] for ref, _ in BAD_REFS])
def test_a_ref_git_would_refuse_is_bad_payload_saying_why(kind: str, ref: str, reason: str) -> None:
    headers, body = signed_push(kind, _REPOS[kind], ref, A, B, SECRET)
    with pytest.raises(BadPayload, match=re.escape(reason)) as refused:
        HOSTS[kind].module.parse(Headers(headers), body)
    assert "\n" not in str(refused.value)  # the reason quotes the ref escaped: it is safe to log


@pytest.mark.parametrize("kind", sorted(HOSTS))
@pytest.mark.parametrize("ref", ["refs/heads/feature/ünïcode-#1", "refs/tags/v1.0.0-rc.1+build.5",
                                 "refs/heads/a.b/c_d", "refs/heads/@", "refs/heads/release/2026.02"])
def test_unusual_refs_git_accepts_are_accepted(kind: str, ref: str) -> None:
    headers, body = signed_push(kind, _REPOS[kind], ref, A, B, SECRET)
    assert HOSTS[kind].module.parse(Headers(headers), body).updates[0].ref == ref


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_a_repository_name_with_a_control_character_is_bad_payload(kind: str) -> None:
    repo = "ACME/widgets" + FORGED if kind == "bitbucket-server" else "acme/widgets" + FORGED
    headers, body = signed_push(kind, repo, "refs/heads/main", A, B, SECRET)
    with pytest.raises(BadPayload, match="control character"):
        HOSTS[kind].module.parse(Headers(headers), body)


@pytest.mark.parametrize("kind", ["gitea", "forgejo"])
def test_a_deleted_branchs_bad_name_is_bad_payload(kind: str) -> None:
    """Gitea's delete event names the branch by itself; the full name built from it is checked too."""
    payload = json.loads(fixture(kind, "delete-branch.json"))
    payload["ref"] = "feature/moss.lock"
    body = json.dumps(payload).encode()
    with pytest.raises(BadPayload, match=r"'\.lock'"):
        HOSTS[kind].module.parse(signed(kind, body, event="delete"), body)



_REF_PIECES = ["main", "a", "é", ".", "..", "/", "//", "@", "@{", "{", "~", "^", ":", "?", "*", "[", "\\", " ",
               "-", ".lock", "\x7f", "\t", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_REF_PIECES), min_size=1, max_size=6).map(lambda parts: "refs/heads/" + "".join(parts)))
def test_the_ref_check_agrees_with_git_itself(ref: str) -> None:
    """``git check-ref-format`` is the authority: our reason is None exactly when git takes the name."""
    by_git = subprocess.run(["git", "check-ref-format", ref], capture_output=True, timeout=10).returncode == 0
    assert (payloads.ref_format_problem(ref) is None) == by_git, (ref, payloads.ref_format_problem(ref))
