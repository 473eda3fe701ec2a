"""GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, JSON or form-encoded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import BadPayload, Event, Ignored, Ping, Push, RefUpdate
from bridge.sources import payloads
from bridge.sources.signing import parse_hex_digest, verify_digest

KIND = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless the body carries a valid signature from one of ``secrets``."""
    digest = parse_hex_digest(headers.get(SIGNATURE_HEADER), SIGNATURE_HEADER, prefix="sha256=")
    verify_digest(secrets, body, digest, SIGNATURE_HEADER)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push, Ping or Ignored."""
    delivery = headers.get("X-GitHub-Delivery") or None
    event = headers.get("X-GitHub-Event")
    if not event:
        raise BadPayload("missing X-GitHub-Event header")
    payload = payloads.load(headers.get("Content-Type"), body, host="GitHub", form=True)
    if event == "ping":
        return Ping(delivery)
    if event != "push":
        return Ignored(f"{event} events are not pushes", delivery)
    try:
        update = RefUpdate(ref=_text(payload, "ref"), before=_text(payload, "before"),
                           after=_text(payload, "after"))
        repo = _text(payload["repository"], "full_name")
    except (KeyError, TypeError) as exc:
        raise BadPayload(f"not a GitHub push: missing {exc}") from None
    return Push(repo=repo, updates=(update,), delivery=delivery)


def _text(obj: Any, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(key)
    return value
