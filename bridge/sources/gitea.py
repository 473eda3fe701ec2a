"""Gitea: ``X-Gitea-Signature: <hex HMAC-SHA256>``; JSON or form bodies. Forgejo reuses all of it.

Three things about Gitea that a GitHub-shaped receiver gets wrong, each seen in Gitea's source:

- A form body (``payload=<json>``) is signed over the JSON inside ``payload``, not over the raw
  body as GitHub does, so verify reads that field (exactly one of it) before checking.
- Deleting a branch sends no push at all, only a ``delete`` event with the short branch name and
  no sha (tags get both); it becomes a Push whose ``after`` is all zeros, with ``before`` all
  zeros too because Gitea does not say what the branch pointed at. The hook must have "Delete"
  events enabled for this to arrive.
- The "Test delivery" button sends a push whose ``before`` equals ``after`` (both all zeros on
  recent versions, which would read as deleting the default branch): that is a Ping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.events import ZERO_SHA, Event, HeaderNames, Ignored, Ping, Push, Unauthorized
from bridge.sources import payloads
from bridge.sources.signing import verify_hex_signature

KIND = "gitea"


@dataclass(frozen=True, slots=True)
class Flavour:
    """The header names and display name of one member of the Gitea family."""

    host: str
    signature: str
    event: str
    delivery: str

    @property
    def headers(self) -> HeaderNames:
        return HeaderNames(event=self.event, delivery=(self.delivery,), signature=(self.signature,))


GITEA = Flavour(host="Gitea", signature="X-Gitea-Signature", event="X-Gitea-Event",
                delivery="X-Gitea-Delivery")
HEADERS = GITEA.headers


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless ``X-Gitea-Signature`` is a valid signature from one of ``secrets``."""
    verify_as(GITEA, headers, body, secrets)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push, Ping (test delivery) or Ignored."""
    return parse_as(GITEA, headers, body)


def verify_as(flavour: Flavour, headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Gitea's check under ``flavour``'s header names; the signed bytes are the JSON, even in a form."""
    signed: bytes | None = body
    if payloads.media_type(headers.get("Content-Type")) == payloads.FORM:
        signed = payloads.form_payload(body)
        if signed is None:
            raise Unauthorized("form body without exactly one payload field: nothing signed to check")
    verify_hex_signature(headers, flavour.signature, signed, secrets)


def parse_as(flavour: Flavour, headers: Mapping[str, str], body: bytes) -> Event:
    """Gitea's payloads under ``flavour``'s header names."""
    delivery = headers.get(flavour.delivery) or None
    event = payloads.header(headers, flavour.event)
    payload = payloads.load(headers.get("Content-Type"), body, host=flavour.host, form=True)
    if event == "push":
        update = payloads.ref_update(
            payloads.text(payload, "ref"), payloads.text(payload, "before"), payloads.text(payload, "after")
        )
        repo = payloads.text(payload, "repository", "full_name")
        if update.before == update.after:
            return Ping(delivery)
        return Push(repo=repo, updates=(update,), delivery=delivery)
    if event == "delete" and payload.get("ref_type") == "branch":
        ref = payloads.text(payload, "ref")
        full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"  # Forgejo hooks send the full name
        update = payloads.ref_update(full, ZERO_SHA, ZERO_SHA)
        return Push(repo=payloads.text(payload, "repository", "full_name"), updates=(update,), delivery=delivery)
    if event == "delete" and payload.get("ref_type") == "tag":
        return Ignored("tag deletions arrive as push events", delivery)
    return Ignored(f"{event} events are not pushes", delivery)
