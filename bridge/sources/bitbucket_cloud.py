"""Bitbucket Cloud: ``X-Hub-Signature: sha256=<hex>`` as Data Center, but its own push shape.

``repo:push`` lists refs in ``push.changes[]`` as ``old``/``new`` states with short names and a
``type``; a created ref has ``old: null`` and a deleted one ``new: null``, whose sha becomes all
zeros here so a deletion looks as it does from every other host. Cloud has no ping event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import ZERO_SHA, BadPayload, Event, HeaderNames, Ignored, Push, RefUpdate
from bridge.sources import payloads
from bridge.sources.bitbucket_server import EVENT_HEADER, NO_REF_CHANGED, SIGNATURE_HEADER, SIGNATURE_PREFIX
from bridge.sources.signing import verify_hex_signature

KIND = "bitbucket-cloud"
HEADERS = HeaderNames(event=EVENT_HEADER, delivery=("X-Request-UUID",), signature=(SIGNATURE_HEADER,))
REF_PREFIXES = {"branch": "refs/heads/", "named_branch": "refs/heads/", "tag": "refs/tags/"}


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless ``X-Hub-Signature`` is a valid ``sha256=`` signature of the body."""
    verify_hex_signature(headers, SIGNATURE_HEADER, body, secrets, prefix=SIGNATURE_PREFIX)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push (all its refs) or Ignored."""
    delivery = headers.get(HEADERS.delivery[0]) or None
    event = payloads.header(headers, EVENT_HEADER)
    payload = payloads.load(headers.get("Content-Type"), body, host="Bitbucket Cloud")
    if event != "repo:push":
        return Ignored(f"{event} events are not pushes", delivery)
    push = payload.get("push")
    changes = push.get("changes") if isinstance(push, dict) else None
    if not isinstance(changes, list):
        raise BadPayload("repo:push without push.changes")
    if not changes:  # documented (e.g. after a merged pull request): Bitbucket calls a 400 failed
        return Ignored(NO_REF_CHANGED, delivery)
    repo = payloads.text(payload, "repository", "full_name")
    return Push(repo=repo, updates=tuple(_update(change) for change in changes), delivery=delivery)


def _update(change: Any) -> RefUpdate:
    """One entry of ``push.changes[]``: the ref named by whichever side exists, null sides all zeros."""
    if not isinstance(change, dict):
        raise BadPayload("push.changes[] entry is not an object")
    old, new = change.get("old"), change.get("new")
    named = new if new is not None else old
    if named is None:
        raise BadPayload("push change with neither old nor new")
    kind = payloads.text(named, "type")
    if kind not in REF_PREFIXES:
        raise BadPayload(f"push change of unknown type {kind!r}")
    ref = REF_PREFIXES[kind] + payloads.text(named, "name")
    return payloads.ref_update(ref, _sha(old), _sha(new))


def _sha(state: Any) -> str:
    return ZERO_SHA if state is None else payloads.text(state, "target", "hash")
