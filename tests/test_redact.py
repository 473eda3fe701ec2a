"""The scrubber on its own: every form a secret leaves in, URL userinfo, structures, minted tokens.

The secrets suite (test_reliability_secrets.py) shows it at work on every channel of real
processes; these show each form it must catch, one at a time, so a miss names its form.
"""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import quote, quote_plus

import pytest

from bridge.redact import FORGET_AFTER, MASK, Redactor

TOKEN = "tok-8Rq2/Lm+Wz=5?&é\"x"  # every character an encoder treats differently
PLAIN = "mesa-live-7fK2pX9qR4tW1zL8"
BASIC = base64.b64encode(f":{TOKEN}".encode()).decode()


@pytest.mark.parametrize(("form", "text"), [
    ("plain", TOKEN),
    ("percent-encoded", quote(TOKEN, safe="")),
    ("percent-encoded, path", quote(TOKEN)),
    ("percent-encoded, form", quote_plus(TOKEN)),
    ("percent-encoded, lower-case hex", re.sub("%..", lambda hexed: hexed.group().lower(), quote(TOKEN, safe=""))),
    ("encodeURIComponent", quote(TOKEN, safe="!'()*~")),
    ("JSON-escaped", json.dumps(TOKEN)[1:-1]),
    ("JSON-escaped, UTF-8", json.dumps(TOKEN, ensure_ascii=False)[1:-1]),
    ("JSON-escaped with \\/", json.dumps(TOKEN)[1:-1].replace("/", "\\/")),
    ("JSON-escaped twice", json.dumps(json.dumps(TOKEN)[1:-1])[1:-1]),
    ("base64", base64.b64encode(TOKEN.encode()).decode()),
    ("base64, URL-safe", base64.urlsafe_b64encode(TOKEN.encode()).decode()),
    ("base64 of :token (Azure's Basic auth)", base64.b64encode(f":{TOKEN}".encode()).decode()),
])
def test_each_form_of_a_secret_is_masked_whole(form: str, text: str) -> None:
    assert Redactor([TOKEN])(f"before {text} after") == f"before {MASK} after", form


@pytest.mark.parametrize(("stacked", "text", "scrubbed"), [
    ("a Basic-auth header quoted in a link", quote(f"Authorization: Basic {BASIC}", safe=""),
     quote("Authorization: Basic ", safe="") + MASK),
    ("a JSON body quoted in a link", quote(json.dumps({"password": TOKEN}), safe=""),
     quote('{"password": "', safe="") + MASK + quote('"}', safe="")),
    ("a Basic-auth header in a JSON string", json.dumps(f"Basic {BASIC}"), f'"Basic {MASK}"'),
])
def test_encodings_stacked_on_the_way_out_are_masked(stacked: str, text: str, scrubbed: str) -> None:
    assert Redactor([TOKEN])(text) == scrubbed, stacked


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "deploy", "ops-bot"])
@pytest.mark.parametrize("after", ["", "x", "xy", ":more"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_a_secret_amid_other_text_keeps_no_bit_of_it(user: str, after: str, encode) -> None:
    """``Basic base64(user:password)``: whatever the user name, only characters that carry its bits
    (or what follows the secret) stay visible."""
    before = f"{user}:" if user else ""
    encoded = encode(f"{before}{PLAIN}{after}".encode()).decode()
    scrubbed = Redactor([PLAIN])(f"Authorization: Basic {encoded}").removeprefix("Authorization: Basic ")
    assert MASK in scrubbed
    left, _, right = scrubbed.partition(MASK)
    first_secret_bit, end_secret_bit = 8 * len(before), 8 * (len(before) + len(PLAIN))
    assert len(left) <= -(-first_secret_bit // 6)  # characters made (partly) of the user name's bits
    assert len(right) <= len(encoded) - end_secret_bit // 6


def test_a_urls_userinfo_is_masked_even_when_unknown() -> None:
    scrub = Redactor([])
    assert scrub("fatal: https://oauth2:glpat-unknown@gitlab.example/acme/w.git") == \
        "fatal: https://***@gitlab.example/acme/w.git"
    assert scrub("ssh://git@host/x https://tok3n@github.com/a?x=y") == "ssh://***@host/x https://***@github.com/a?x=y"
    assert scrub("https://user:p@ss@host/x") == "https://***@host/x"  # an unencoded "@" in the password
    assert scrub("mail ops@example.com at https://example.com/a@b") == "mail ops@example.com at https://example.com/a@b"


def test_structures_are_scrubbed_through_and_left_as_they_were() -> None:
    scrub = Redactor([PLAIN])
    value = {"error": {"message": f"token {PLAIN}", "details": [PLAIN, 9, None, (PLAIN, True)]}, PLAIN: 1.5}
    assert scrub.scrub(value) == {"error": {"message": "token ***", "details": ["***", 9, None, ("***", True)]},
                                  "***": 1.5}


def test_a_minted_token_is_masked_once_registered_and_forgotten_after_it_expired() -> None:
    scrub = Redactor(["config-secret-1"])
    minted = "ya29.minted-access-token"
    assert scrub(minted) == minted
    scrub.add(minted, expires_at=time.time() + 60)
    assert scrub(f"Bearer {minted} config-secret-1") == "Bearer *** ***"
    scrub.add("ya29.next-token", expires_at=time.time() - FORGET_AFTER - 1)  # long expired: pruned at once
    scrub.add("another-secret")
    assert scrub(minted) == "***" and scrub("ya29.next-token") == "ya29.next-token"
    assert scrub("config-secret-1") == "***"  # a config secret never expires


def test_short_strings_are_not_secrets() -> None:
    assert Redactor(["abc"])("abc abcd") == "abc abcd"
