"""The suite's webhook corpus (``tests/fixtures/corpus.yml``): each case's payload, and the request
its host would send it in, with that host's whole header set and signature.

The header sets are each host's documented ones, including the headers syncbridge ignores (Gitea
also sends Gogs' and GitHub's names, GitHub a SHA-1 signature beside the SHA-256 one), so a
receiver that read the wrong one would show it here.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import yaml

from bridge.sources.signing import hmac_sha256

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "corpus.yml"


@dataclass(frozen=True)
class Case:
    """One delivery of the corpus and the answer it must get."""

    host: str
    file: str
    event: str
    expect: str  # push | ping | ignored | an HTTP status
    name: str = ""
    repo: str | None = None
    ref: str | None = None
    after: str | None = None
    reason: str | None = None
    content_type: str = "json"
    encoding: str | None = None
    lands_with: str | None = None

    @property
    def id(self) -> str:
        return f"{self.host}/{self.name or Path(self.file).stem}"

    def payload(self) -> bytes:
        return (FIXTURES / self.host / self.file).read_bytes()


def cases() -> list[Case]:
    """Every case of the manifest, in its order."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    return [Case(host=host, **{key: str(value) for key, value in entry.items()})
            for host, entries in manifest.items() for entry in entries]


def request(case: Case, secret: str, delivery: str) -> tuple[dict[str, str], bytes]:
    """The headers and body ``case.host`` sends for this case, signed with ``secret``."""
    body = case.payload()
    if case.content_type == "form":
        body = b"payload=" + quote_plus(json.dumps(json.loads(body), separators=(",", ":"))).encode()
    if case.encoding == "gzip":
        body = gzip.compress(body)
    headers = HEADERS[case.host](case, secret.encode(), body, delivery)
    headers["Content-Type"] = ("application/x-www-form-urlencoded" if case.content_type == "form"
                               else headers.get("Content-Type", "application/json"))
    if case.encoding:
        headers["Content-Encoding"] = case.encoding
    return headers, body


def _hex(secret: bytes, signed: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret, signed, getattr(hashlib, digest)).hexdigest()


def _github(case: Case, secret: bytes, body: bytes, delivery: str) -> dict[str, str]:
    return {"User-Agent": "GitHub-Hookshot/4b1c2d3", "X-GitHub-Event": case.event, "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "498812345", "X-GitHub-Hook-Installation-Target-ID": "90817263",
            "X-GitHub-Hook-Installation-Target-Type": "organization",
            "X-Hub-Signature": "sha1=" + _hex(secret, body, "sha1"),
            "X-Hub-Signature-256": "sha256=" + hmac_sha256(secret, body).hex()}


def _gitlab(case: Case, secret: bytes, body: bytes, delivery: str) -> dict[str, str]:
    return {"User-Agent": "GitLab/17.8.1", "X-Gitlab-Event": case.event, "X-Gitlab-Event-UUID": delivery,
            "Idempotency-Key": delivery, "X-Gitlab-Webhook-UUID": "2c0e6a4b-8f1d-4a3e-b5c7-9d2f1e0a6b84",
            "X-Gitlab-Instance": "https://gitlab.grid.example", "X-Gitlab-Token": secret.decode()}


def _gitea_family(*names: str):
    """Gitea signs the JSON (a form's ``payload`` field); it also sends Gogs' and GitHub's header names."""

    def headers(case: Case, secret: bytes, body: bytes, delivery: str) -> dict[str, str]:
        signed = json.dumps(json.loads(case.payload()), separators=(",", ":")).encode() \
            if case.content_type == "form" else body
        signature = _hex(secret, signed)
        sent = {"User-Agent": "Go-http-client/1.1", "X-GitHub-Event": case.event, "X-GitHub-Event-Type": case.event,
                "X-GitHub-Delivery": delivery, "X-Hub-Signature": "sha1=" + _hex(secret, signed, "sha1"),
                "X-Hub-Signature-256": "sha256=" + signature}
        for name in ("Gogs", *names):
            sent.update({f"X-{name}-Event": case.event, f"X-{name}-Event-Type": case.event,
                         f"X-{name}-Delivery": delivery, f"X-{name}-Signature": signature})
        return sent

    return headers


def _bitbucket_server(case: Case, secret: bytes, body: bytes, delivery: str) -> dict[str, str]:
    return {"User-Agent": "Atlassian HttpClient 4.2.0 / Bitbucket-8.19.1 (8019001) / Default",
            "Content-Type": "application/json; charset=utf-8", "X-Event-Key": case.event, "X-Request-Id": delivery,
            "X-Hub-Signature": "sha256=" + _hex(secret, body)}


def _bitbucket_cloud(case: Case, secret: bytes, body: bytes, delivery: str) -> dict[str, str]:
    return {"User-Agent": "Bitbucket-Webhooks/2.0", "X-Event-Key": case.event, "X-Request-UUID": delivery,
            "X-Hook-UUID": "{5e1d9c7b-3a2f-4e6d-8c0b-1a9f8e7d6c5b}", "X-Attempt-Number": "1",
            "X-Event-Time": "Wed, 02 Sep 2026 06:40:13 GMT", "X-Hub-Signature": "sha256=" + _hex(secret, body)}


HEADERS = {
    "github": _github,
    "gitlab": _gitlab,
    "gitea": _gitea_family("Gitea"),
    "forgejo": _gitea_family("Gitea", "Forgejo"),
    "bitbucket-server": _bitbucket_server,
    "bitbucket-cloud": _bitbucket_cloud,
}
