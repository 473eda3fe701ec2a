"""Forgejo: Gitea's payloads and signature under ``X-Forgejo-*`` header names.

Forgejo forked Gitea and still sends the ``X-Gitea-*`` headers as well; this module reads its
own names so a Forgejo source keeps working if those compatibility headers are ever dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.events import Event
from bridge.sources.gitea import Flavour, parse_as, verify_as

KIND = "forgejo"
FORGEJO = Flavour(host="Forgejo", signature="X-Forgejo-Signature", event="X-Forgejo-Event",
                  delivery="X-Forgejo-Delivery")
HEADERS = FORGEJO.headers


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless ``X-Forgejo-Signature`` is a valid signature from one of ``secrets``."""
    verify_as(FORGEJO, headers, body, secrets)


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push, Ping (test delivery) or Ignored, as for Gitea."""
    return parse_as(FORGEJO, headers, body)
