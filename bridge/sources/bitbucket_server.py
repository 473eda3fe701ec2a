"""Bitbucket Data Center (Server): ``X-Hub-Signature: sha256=<hex>``; one event, many refs.

``repo:refs_changed`` lists every ref of a push in ``changes[]`` with full ref names and both
hashes, so it maps onto RefUpdate directly. ``diagnostics:ping`` is the "Test connection" button;
Bitbucket sends it unsigned when the hook has no secret, and verify rejects it like anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import BadPayload, Event, HeaderNames, Ignored, Ping, Push, RefUpdate
from bridge.sources import payloads
from bridge.sources.signing import verify_hex_signature

KIND = "bitbucket-server"
SIGNATURE_HEADER = "X-Hub-Signature"
SIGNATURE_PREFIX = "sha256="
EVENT_HEADER = "X-Event-Key"
NO_REF_CHANGED = "no ref changed"
HEADERS = HeaderNames(event=EVENT_HEADER, delivery=("X-Request-Id",), signature=(SIGNATURE_HEADER,))


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless ``X-Hub-Signature`` is a valid ``sha256=`` signature of the body."""
    verify_hex_signature(headers, SIGNATURE_HEADER, body, secrets, prefix=SIGNATURE_PREFIX)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push (all its refs), Ping or Ignored."""
    delivery = headers.get(HEADERS.delivery[0]) or None
    event = payloads.header(headers, EVENT_HEADER)
    payload = payloads.load(headers.get("Content-Type"), body, host="Bitbucket Data Center")
    if event == "diagnostics:ping":
        return Ping(delivery)
    if event != "repo:refs_changed":
        return Ignored(f"{event} events are not pushes", delivery)
    changes = payload.get("changes")
    if not isinstance(changes, list):
        raise BadPayload("repo:refs_changed without changes")
    if not changes:  # documented (e.g. after a merged pull request): Bitbucket calls a 400 failed
        return Ignored(NO_REF_CHANGED, delivery)
    repo = f"{payloads.text(payload, 'repository', 'project', 'key')}/{payloads.text(payload, 'repository', 'slug')}"
    return Push(repo=repo, updates=tuple(_update(change) for change in changes), delivery=delivery)


def _update(change: Any) -> RefUpdate:
    """One entry of ``changes[]``; ``refId`` is the full name (``ref.id`` in older payloads)."""
    ref = change.get("refId") if isinstance(change, dict) else None
    if not isinstance(ref, str):
        ref = payloads.text(change, "ref", "id")
    return payloads.ref_update(ref, payloads.text(change, "fromHash"), payloads.text(change, "toHash"))
