"""Reading a verified body, shared by every host module.

Hosts differ in where they put a push's fields, not in how a body is decoded or what a
well-formed ref update looks like; keeping both here means one place decides what is a 400
(BadPayload) or a 415 (UnsupportedMediaType), and no host module lets a KeyError or TypeError
escape as a 500.

Every string read from a payload goes on into job records, RQ's job descriptions, log lines and
chat messages, so none may carry a control character, and every ref must be a name git itself
would accept (``git check-ref-format``): a ref with a newline once forged worker log lines.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from bridge.events import BadPayload, RefUpdate, UnsupportedMediaType

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
FORM_FIELD = b"payload"
_SHA_LENGTHS = (40, 64)  # SHA-1 and SHA-256 object ids: Gitea, Forgejo and GitLab host SHA-256 repositories
_HEX = frozenset(string.hexdigits)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What git-check-ref-format(1) refuses in a name under refs/, in one search (a valid ref, nearly
# every push, costs one scan): controls, space and ~ ^ : ? * [ \ (rules 4, 5, 10), ".." (3), "@{"
# (8), an empty component (6), a component starting with "." or ending in ".lock" (1), and a
# final "." or "/" (6, 7). What it matched says which rule was broken.
_REF_RULES = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?=/|$)|[./]$")
_REF_REASONS = {"..": "it contains '..'", "@{": "it contains '@{'", "//": "it has an empty component ('//')",
                ".": "it ends with '.'", "/": "it ends with '/'", " ": "it contains a space"}


def media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``, lower-cased; "" when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def form_payload(body: bytes) -> bytes | None:
    """The exact bytes of the one ``payload`` field of a form body, or None if it has none or several.

    Decoded by hand rather than with ``parse_qs``: that one re-encodes values as ASCII or
    replaces bad UTF-8, and Gitea signs these very bytes, so they must come back unchanged.
    Two ``payload`` fields are refused, so verify and parse can never read different ones.
    """
    found: list[bytes] = []
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == FORM_FIELD:
            found.append(unquote_to_bytes(value.replace(b"+", b" ")))
    return found[0] if len(found) == 1 else None


def load(content_type: str | None, body: bytes, *, host: str, form: bool = False) -> dict[str, Any]:
    """The JSON object of a verified body: a JSON body, or (``form=True``) a form's ``payload`` field.

    ``host`` names the sender in the error, so a 415 says what that host would have sent.
    """
    mimetype = media_type(content_type)
    if form and mimetype == FORM:
        text = form_payload(body)
        if text is None:
            raise BadPayload("form body without exactly one payload field")
    elif mimetype == JSON:
        text = body
    else:
        accepted = f"{JSON} or {FORM}" if form else JSON
        raise UnsupportedMediaType(f"{host} sends {accepted}, not {mimetype or 'no content type'}")
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:  # stricter than the standard library: let it decide, and say why
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadPayload(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadPayload("body is not a JSON object")
    return payload


def header(headers: Mapping[str, str], name: str) -> str:
    """A header the host always sends (the event name); BadPayload when a verified body lacks it."""
    value = headers.get(name)
    if not value:
        raise BadPayload(f"missing {name} header")
    return value


def text(obj: Any, *path: str) -> str:
    """The non-empty string at ``path`` inside ``obj``, or BadPayload naming the path."""
    value = obj
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise BadPayload(f"missing {'.'.join(path)}")
        value = value[key]
    if not isinstance(value, str) or not value:
        raise BadPayload(f"{'.'.join(path)} is not a non-empty string")
    if _CONTROL.search(value):
        raise BadPayload(f"{'.'.join(path)} contains a control character: {value!r}")
    return value


def ref_update(ref: str, before: str, after: str) -> RefUpdate:
    """A RefUpdate whose ref is a full, valid ref name and whose ends are object ids, else BadPayload.

    Checked here because routing globs and the job record trust both: a host's short branch
    name or an empty ``after`` must be a 400 now, not a mirror job for a ref that does not exist.
    Every host's parse builds its updates here, so one check covers them all.
    """
    if not ref.startswith("refs/") or len(ref) == len("refs/"):
        raise BadPayload(f"{ref!r} is not a full ref name")
    problem = ref_format_problem(ref)
    if problem:
        raise BadPayload(f"{ref!r} is not a valid ref name: {problem}")
    return RefUpdate(ref=ref, before=_object_id(before, "before"), after=_object_id(after, "after"))


def ref_format_problem(ref: str) -> str | None:
    """Why ``git check-ref-format`` would refuse the full ref name ``ref``, or None when git takes it.

    The rules of git-check-ref-format(1), each with its own reason (rules 2 and 9, "one slash at
    least" and "not @", hold for any name under ``refs/``). Written out rather than run as ``git``
    (a process per push on the request path) or taken from dulwich, whose ``check_ref_format``
    says only yes or no and lets ``a//b`` and ``a.lock/b`` through.
    """
    broken = _REF_RULES.search(ref)
    if broken is None:
        return None
    text = broken.group()
    if text in _REF_REASONS:
        return _REF_REASONS[text]
    if text in ("/.", ".lock"):
        start = ref.rfind("/", 0, broken.start() + 1) + 1
        component = ref[start:].split("/", 1)[0]
        return f"its component {component!r} " + ("starts with '.'" if text == "/." else "ends with '.lock'")
    return "it contains a control character" if _CONTROL.match(text) else f"it contains {text!r}"


def _object_id(value: str, name: str) -> str:
    if len(value) not in _SHA_LENGTHS or not _HEX.issuperset(value):
        raise BadPayload(f"{name} is not a 40- or 64-character hex object id")
    return value.lower()

