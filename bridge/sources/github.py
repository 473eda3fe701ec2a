"""GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, JSON or form-encoded."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.events import Event, HeaderNames, Ignored, Ping, Push
from bridge.sources import payloads
from bridge.sources.signing import parse_hex_digest, verify_digest

KIND = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"
HEADERS = HeaderNames(event="X-GitHub-Event", delivery=("X-GitHub-Delivery",), signature=(SIGNATURE_HEADER,))


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless the body carries a valid signature from one of ``secrets``."""
    digest = parse_hex_digest(headers.get(SIGNATURE_HEADER), SIGNATURE_HEADER, prefix="sha256=")
    verify_digest(secrets, body, digest, SIGNATURE_HEADER)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push, Ping or Ignored."""
    delivery = headers.get(HEADERS.delivery[0]) or None
    event = payloads.header(headers, HEADERS.event)
    payload = payloads.load(headers.get("Content-Type"), body, host="GitHub", form=True)
    if event == "ping":
        return Ping(delivery)
    if event != "push":
        return Ignored(f"{event} events are not pushes", delivery)
    update = payloads.ref_update(payloads.text(payload, "ref"), payloads.text(payload, "before"),
                                 payloads.text(payload, "after"))
    return Push(repo=payloads.text(payload, "repository", "full_name"), updates=(update,), delivery=delivery)
