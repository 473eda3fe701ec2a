"""Sample pushes in each host's own shape, signed the way that host signs: for ``send-test``.

They carry the fields syncbridge and common tools read, so a 202 proves the whole path for a
source of any kind: its verification, its parser, the routes and the queue.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from bridge.sources.gitlab import SIGNING_TOKEN_PREFIX
from bridge.sources.signing import hmac_sha256, standard_webhooks_signature

Sample = tuple[dict[str, str], bytes]


def _short(ref: str) -> tuple[str, str]:
    kind = "tag" if ref.startswith("refs/tags/") else "branch"
    return kind, ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def github(repo: str, ref: str, before: str, after: str) -> tuple[dict[str, str], dict[str, Any]]:
    owner, _, name = repo.partition("/")
    body = {"ref": ref, "before": before, "after": after, "created": False, "deleted": False, "forced": False,
            "base_ref": None, "compare": f"https://github.com/{repo}/compare/{before[:12]}...{after[:12]}",
            "commits": [{"id": after, "message": "syncbridge send-test", "distinct": True}],
            "head_commit": {"id": after, "message": "syncbridge send-test"},
            "repository": {"id": 1, "name": name, "full_name": repo, "owner": {"login": owner, "name": owner}},
            "pusher": {"name": "syncbridge", "email": "send-test@syncbridge.invalid"},
            "sender": {"login": "syncbridge"}}
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": secrets.token_hex(16),
            "User-Agent": "GitHub-Hookshot/syncbridge-send-test"}, body


def gitlab(repo: str, ref: str, before: str, after: str) -> tuple[dict[str, str], dict[str, Any]]:
    event = "Tag Push Hook" if ref.startswith("refs/tags/") else "Push Hook"
    body = {"object_kind": "tag_push" if event == "Tag Push Hook" else "push", "ref": ref, "before": before,
            "after": after, "checkout_sha": after, "user_username": "syncbridge",
            "project": {"id": 1, "name": repo.rsplit("/", 1)[-1], "path_with_namespace": repo},
            "commits": [{"id": after, "message": "syncbridge send-test"}], "total_commits_count": 1}
    return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": secrets.token_hex(16)}, body


def gitea(repo: str, ref: str, before: str, after: str, header: str = "Gitea") -> tuple[dict[str, str], dict]:
    owner, _, name = repo.partition("/")
    body = {"ref": ref, "before": before, "after": after, "compare_url": "",
            "commits": [{"id": after, "message": "syncbridge send-test"}], "total_commits": 1,
            "repository": {"id": 1, "name": name, "full_name": repo, "owner": {"login": owner}},
            "pusher": {"login": "syncbridge"}, "sender": {"login": "syncbridge"}}
    return {f"X-{header}-Event": "push", f"X-{header}-Delivery": secrets.token_hex(16)}, body


def bitbucket_server(repo: str, ref: str, before: str, after: str) -> tuple[dict[str, str], dict[str, Any]]:
    key, _, slug = repo.partition("/")
    kind, name = _short(ref)
    body = {"eventKey": "repo:refs_changed", "date": "2026-01-01T00:00:00+0000",
            "actor": {"name": "syncbridge", "slug": "syncbridge"},
            "repository": {"slug": slug, "name": slug, "project": {"key": key, "name": key}},
            "changes": [{"ref": {"id": ref, "displayId": name, "type": kind.upper()}, "refId": ref,
                         "fromHash": before, "toHash": after, "type": "UPDATE"}]}
    return {"X-Event-Key": "repo:refs_changed", "X-Request-Id": secrets.token_hex(16)}, body


def bitbucket_cloud(repo: str, ref: str, before: str, after: str) -> tuple[dict[str, str], dict[str, Any]]:
    kind, name = _short(ref)
    side = lambda sha: {"type": kind, "name": name, "target": {"type": "commit", "hash": sha}}  # noqa: E731
    body = {"actor": {"nickname": "syncbridge"}, "repository": {"full_name": repo, "name": repo.split("/")[-1]},
            "push": {"changes": [{"old": side(before), "new": side(after), "created": False, "closed": False,
                                  "forced": False}]}}
    return {"X-Event-Key": "repo:push", "X-Request-UUID": "{" + secrets.token_hex(16) + "}"}, body


def _hex(header: str, prefix: str = "") -> Callable[[bytes, bytes], dict[str, str]]:
    return lambda body, secret: {header: prefix + hmac_sha256(secret, body).hex()}


def _gitlab_proof(body: bytes, secret: bytes) -> dict[str, str]:
    """A signing token signs (it never travels in clear); any other secret is sent as the plain token."""
    if not secret.startswith(SIGNING_TOKEN_PREFIX):
        return {"X-Gitlab-Token": secret.decode()}
    msg_id, stamp = secrets.token_hex(16), str(int(time.time()))
    return {"webhook-id": msg_id, "Idempotency-Key": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": standard_webhooks_signature(secret, msg_id, stamp, body)}


SAMPLES: dict[str, tuple[Callable[..., tuple[dict[str, str], dict[str, Any]]],
                         Callable[[bytes, bytes], dict[str, str]]]] = {
    "github": (github, _hex("X-Hub-Signature-256", "sha256=")),
    "gitlab": (gitlab, _gitlab_proof),
    "gitea": (gitea, _hex("X-Gitea-Signature")),
    "forgejo": (lambda *a: gitea(*a, header="Forgejo"), _hex("X-Forgejo-Signature")),
    "bitbucket-server": (bitbucket_server, _hex("X-Hub-Signature", "sha256=")),
    "bitbucket-cloud": (bitbucket_cloud, _hex("X-Hub-Signature", "sha256=")),
}


def signing_secret(kind: str, source_secrets: list[bytes]) -> bytes:
    """The secret a ``kind`` host signs with, of a source's (current first): GitLab's signing token
    when the source has one, since the plain token alone is then refused."""
    if kind == "gitlab":
        return next((s for s in source_secrets if s.startswith(SIGNING_TOKEN_PREFIX)), source_secrets[0])
    return source_secrets[0]


def signed_push(kind: str, repo: str, ref: str, before: str, after: str, secret: bytes) -> Sample:
    """Headers and raw body of a push from a ``kind`` host, signed with ``secret``."""
    build, sign = SAMPLES[kind]
    headers, document = build(repo, ref, before, after)
    body = json.dumps(document).encode()
    return {**headers, "Content-Type": "application/json", **sign(body, secret)}, body
