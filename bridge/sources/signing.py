"""Constant-time HMAC checks shared by every host that signs its body.

``cryptography``'s ``HMAC.verify`` compares in constant time; the header is checked for prefix,
length and hex before any slicing, so a malformed header is a 401 and never a crash. An empty
secret is skipped everywhere: anyone can compute an HMAC with an empty key, so it proves nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac as stdlib_hmac
import string
import time
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from bridge.events import Unauthorized

_HEX = frozenset(string.hexdigits)
SHA256_HEX_LEN = 64
SHA256_LEN = 32


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    """The raw HMAC-SHA256 digest; used to sign test pushes and by hosts that encode differently."""
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def parse_hex_digest(header: str | None, name: str, prefix: str = "") -> bytes:
    """The digest carried by a ``<prefix><64 hex chars>`` header, or Unauthorized saying why."""
    if not header:
        raise Unauthorized(f"missing {name} header")
    if not header.startswith(prefix):
        raise Unauthorized(f"{name} must start with {prefix!r}")
    value = header[len(prefix) :].strip()
    if len(value) != SHA256_HEX_LEN or not _HEX.issuperset(value):
        raise Unauthorized(f"{name} is not a {SHA256_HEX_LEN}-character hex SHA-256 digest")
    return bytes.fromhex(value)


def verify_digest(secrets: list[bytes], message: bytes, digest: bytes, name: str) -> None:
    """Accept ``digest`` if any of ``secrets`` (rotation) produced it over ``message``."""
    for secret in filter(None, secrets):
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(message)
        try:
            mac.verify(digest)
        except InvalidSignature:
            continue
        return
    raise Unauthorized(f"{name} does not match the body")


def verify_hex_signature(
    headers: Mapping[str, str], name: str, message: bytes, secrets: list[bytes], prefix: str = ""
) -> None:
    """Check header ``name`` (``<prefix><hex HMAC-SHA256 of message>``): the shape most hosts share."""
    verify_digest(secrets, message, parse_hex_digest(headers.get(name), name, prefix), name)


def header_bytes(value: str) -> bytes:
    """The wire bytes of a header value: WSGI hands them over decoded as latin-1 (PEP 3333).

    A value with characters beyond latin-1 cannot have come off the wire; it is encoded as UTF-8
    so a test that builds headers from a UTF-8 secret still compares like for like.
    """
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def token_matches(token: str | None, secrets: list[bytes]) -> bool:
    """Whether a header that carries the secret itself (GitLab's token) equals one of ``secrets``.

    Every secret is compared, each with ``hmac.compare_digest``, so the time taken says nothing
    about how much of the token was right.
    """
    if not token:
        return False
    given = header_bytes(token)
    return any([stdlib_hmac.compare_digest(given, secret) for secret in secrets if secret])


STANDARD_WEBHOOKS_TOLERANCE = 5 * 60
"""Seconds a Standard Webhooks timestamp may be away from our clock, either way (the spec's 5 minutes)."""


def standard_webhooks_key(secret: bytes) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` decoded, any other secret as is."""
    if secret.startswith(b"whsec_"):
        try:
            return base64.b64decode(secret[len(b"whsec_") :], validate=True)
        except binascii.Error:
            return secret
    return secret


def standard_webhooks_signature(secret: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``: what a sender puts in ``webhook-signature``."""
    message = header_bytes(msg_id) + b"." + header_bytes(timestamp) + b"." + body
    return "v1," + base64.b64encode(hmac_sha256(standard_webhooks_key(secret), message)).decode("ascii")


def verify_standard_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: list[bytes],
    *,
    tolerance: int = STANDARD_WEBHOOKS_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise Unauthorized unless ``webhook-signature`` holds a valid ``v1`` signature of this delivery.

    The Standard Webhooks scheme (https://www.standardwebhooks.com/) signs ``id.timestamp.body``
    so a captured request cannot be replayed outside ``tolerance`` seconds of its timestamp; the
    header may list several space-separated signatures (the sender's key rotation), any one of
    which may match any of ``secrets`` (ours).
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise Unauthorized("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized("webhook-timestamp is not a Unix time in seconds")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise Unauthorized(f"webhook-timestamp is more than {tolerance} s away from now")
    digests = list(_v1_digests(signatures.split()))
    if not digests:
        raise Unauthorized("webhook-signature holds no v1,<base64 SHA-256> signature")
    message = header_bytes(msg_id) + b"." + header_bytes(timestamp) + b"." + body
    for secret in filter(None, secrets):
        expected = hmac_sha256(standard_webhooks_key(secret), message)
        if any([stdlib_hmac.compare_digest(expected, digest) for digest in digests]):
            return
    raise Unauthorized("webhook-signature does not match the body")


def _v1_digests(entries: Iterable[str]) -> Iterable[bytes]:
    """The 32-byte digests of the ``v1,<base64>`` entries; other versions (``v1a`` is Ed25519) are skipped."""
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == SHA256_LEN:
            yield digest
