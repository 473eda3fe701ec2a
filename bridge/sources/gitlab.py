"""GitLab: the secret itself in ``X-Gitlab-Token``, or a Standard-Webhooks signature; JSON bodies.

A hook may have a secret token, a signing token (``whsec_<base64>``), or both. Once the source's
secrets include a signing token, every request must carry a valid signature: the plain token
alone would let a captured request be replayed forever, outside the signature's five-minute
window. Until then the token is enough, so a source moves to signatures without a flag day: give
the hook its signing token on GitLab first (it then sends both), then add it to ``secrets``.
A signed delivery is known by its ``webhook-id`` (signed, and equal to GitLab's
``Idempotency-Key``), so a replay within the window is a redelivery that does no new work.
GitLab has no ping: its "Test" button sends an ordinary push built from the latest commits,
which is a harmless sync.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.events import Event, HeaderNames, Ignored, Push, Unauthorized
from bridge.sources import payloads
from bridge.sources.signing import token_matches, verify_standard_webhook

KIND = "gitlab"
TOKEN_HEADER = "X-Gitlab-Token"
SIGNATURE_HEADER = "webhook-signature"
MESSAGE_ID_HEADER = "webhook-id"
SIGNING_TOKEN_PREFIX = b"whsec_"  # GitLab accepts signing tokens only in this form
EVENT_HEADER = "X-Gitlab-Event"
HEADERS = HeaderNames(event=EVENT_HEADER, delivery=(MESSAGE_ID_HEADER, "Idempotency-Key", "X-Gitlab-Event-UUID"),
                      signature=(SIGNATURE_HEADER, TOKEN_HEADER))
PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
SYSTEM_HOOK = "System Hook"
SYSTEM_PUSH_EVENTS = frozenset({"push", "tag_push"})
"""System hooks name the event in the body; ``repository_update`` is left out on purpose: GitLab
sends it for the same push as ``push``/``tag_push`` when both are enabled, and would double the jobs."""


def verify(headers: Mapping[str, str], body: bytes, secrets: list[bytes]) -> None:
    """Raise Unauthorized unless the Standard-Webhooks signature holds or, while no signing token
    is configured, the token equals a secret."""
    signing_tokens = [secret for secret in secrets if secret.startswith(SIGNING_TOKEN_PREFIX)]
    if signing_tokens:  # only these may sign: a plain token travels in clear, anyone who saw one could sign
        if not headers.get(SIGNATURE_HEADER):
            raise Unauthorized(f"missing {SIGNATURE_HEADER} header: this source has a signing token, "
                               f"so {TOKEN_HEADER} alone is not accepted")
        verify_standard_webhook(headers, body, signing_tokens)
        return
    if token_matches(headers.get(TOKEN_HEADER), secrets):
        return
    if headers.get(SIGNATURE_HEADER):
        verify_standard_webhook(headers, body, secrets)
        return
    if headers.get(TOKEN_HEADER):
        raise Unauthorized(f"{TOKEN_HEADER} does not match")
    raise Unauthorized(f"missing {TOKEN_HEADER} or {SIGNATURE_HEADER} header")


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn a verified delivery into a Push or Ignored (GitLab sends no ping)."""
    delivery = next((value for name in HEADERS.delivery if (value := headers.get(name))), None)
    event = payloads.header(headers, EVENT_HEADER)
    payload = payloads.load(headers.get("Content-Type"), body, host="GitLab")
    if event == SYSTEM_HOOK:
        name = payload.get("event_name") or payload.get("object_kind")
        if not (isinstance(name, str) and name in SYSTEM_PUSH_EVENTS):
            return Ignored(f"system hook {name} events are not pushes", delivery)
    elif event not in PUSH_EVENTS:
        return Ignored(f"{event} events are not pushes", delivery)
    update = payloads.ref_update(
        payloads.text(payload, "ref"), payloads.text(payload, "before"), payloads.text(payload, "after")
    )
    repo = payloads.text(payload, "project", "path_with_namespace")
    return Push(repo=repo, updates=(update,), delivery=delivery)
