"""Every real payload under shared/fixtures/webhooks, signed, verified and parsed by its host module.

The expected result is read from each JSON document with a per-host rule that knows where that
host puts repo, ref and shas, so a new payload dropped into the folder is checked without editing
this file; a payload no rule recognises fails, asking for one.

The ``gogs`` folder goes through the gitea module: Gogs is Gitea's ancestor and its push payload
has the same ref/before/after/repository.full_name shape. It is sent with Gitea's header names
(a real Gogs server sends only ``X-Gogs-*``, which no module reads: there is no gogs kind).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_sources import HOSTS, SECRET, signed

from bridge.events import ZERO_SHA, Event, Ignored, Ping, Push, RefUpdate, Unauthorized

SHARED = Path(os.environ.get("SYNCBRIDGE_SHARED_FIXTURES")
              or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "webhooks")
if not SHARED.is_dir():
    pytest.skip(f"no shared webhook payloads at {SHARED} (set SYNCBRIDGE_SHARED_FIXTURES to run these)",
                allow_module_level=True)

DELIVERY = "real-fixture-delivery"
Expectation = tuple[str, Event]
"""The event header value the host would send with the payload, and what it must parse to."""


def _push(repo: str, *updates: tuple[str, str, str]) -> Push:
    return Push(repo=repo, updates=tuple(RefUpdate(*update) for update in updates), delivery=DELIVERY)


def _ignored(event: str) -> Expectation:
    return event, Ignored("", DELIVERY)


def github(p: dict[str, Any]) -> Expectation:
    if "zen" in p and "hook_id" in p:
        return "ping", Ping(DELIVERY)
    if {"ref", "before", "after"} <= p.keys():
        return "push", _push(p["repository"]["full_name"], (p["ref"], p["before"], p["after"]))
    if "ref_type" in p:  # create and delete events: the push event for the same ref carries them
        return _ignored("create" if "master_branch" in p else "delete")
    raise LookupError("no GitHub event recognised")


def gitlab(p: dict[str, Any]) -> Expectation:
    kind, system = p.get("object_kind"), "object_kind" not in p and "event_name" in p
    name = p.get("event_name") if system else kind
    header = "System Hook" if system else {"push": "Push Hook", "tag_push": "Tag Push Hook"}.get(
        kind, f"{str(kind).replace('_', ' ').title()} Hook")
    if name in ("push", "tag_push"):
        return header, _push(p["project"]["path_with_namespace"], (p["ref"], p["before"], p["after"]))
    return _ignored(header)


def gitea(p: dict[str, Any]) -> Expectation:
    if {"ref", "before", "after"} <= p.keys():
        if p["before"] == p["after"]:
            return "push", Ping(DELIVERY)
        return "push", _push(p["repository"]["full_name"], (p["ref"], p["before"], p["after"]))
    if "ref_type" in p and "sha" in p:
        return _ignored("create")
    if p.get("ref_type") == "branch":
        ref = p["ref"] if p["ref"].startswith("refs/") else f"refs/heads/{p['ref']}"
        return "delete", _push(p["repository"]["full_name"], (ref, ZERO_SHA, ZERO_SHA))
    if "ref_type" in p:
        return _ignored("delete")
    if "pull_request" in p:
        return _ignored("pull_request")
    raise LookupError("no Gitea event recognised")


def bitbucket_server(p: dict[str, Any]) -> Expectation:
    if p == {"test": True}:
        return "diagnostics:ping", Ping(DELIVERY)
    event = p["eventKey"]
    if event != "repo:refs_changed":
        return _ignored(event)
    repo = f"{p['repository']['project']['key']}/{p['repository']['slug']}"
    return event, _push(repo, *((c["refId"], c["fromHash"], c["toHash"]) for c in p["changes"]))


def bitbucket_cloud(p: dict[str, Any]) -> Expectation:
    if "push" not in p:
        return _ignored("pullrequest:created" if "pullrequest" in p else "issue:created")

    def ref(change: dict[str, Any]) -> tuple[str, str, str]:
        named = change["new"] or change["old"]
        prefix = "refs/tags/" if named["type"] == "tag" else "refs/heads/"
        old, new = change["old"], change["new"]
        return (prefix + named["name"], old["target"]["hash"] if old else ZERO_SHA,
                new["target"]["hash"] if new else ZERO_SHA)

    return "repo:push", _push(p["repository"]["full_name"], *(ref(c) for c in p["push"]["changes"]))


FOLDERS: dict[str, tuple[str, Callable[[dict[str, Any]], Expectation]]] = {
    "github": ("github", github),
    "gitlab": ("gitlab", gitlab),
    "gitea": ("gitea", gitea),
    "gogs": ("gitea", gitea),
    "bitbucket-server": ("bitbucket-server", bitbucket_server),
    "bitbucket-cloud": ("bitbucket-cloud", bitbucket_cloud),
}
CASES = sorted(SHARED.glob("*/*.json"))


def test_every_folder_has_a_host_module() -> None:
    assert {path.name for path in SHARED.iterdir() if path.is_dir()} <= set(FOLDERS)
    assert CASES, f"no payloads under {SHARED}"


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_real_payload(path: Path) -> None:
    kind, expect = FOLDERS[path.parent.name]
    body = path.read_bytes()
    event, expected = expect(json.loads(body))
    headers = signed(kind, body, event=event, delivery=DELIVERY)
    module = HOSTS[kind].module
    module.verify(headers, body, [SECRET])
    result = module.parse(headers, body)
    if isinstance(expected, Ignored):
        assert isinstance(result, Ignored), result
        assert result.delivery == DELIVERY
    else:
        assert result == expected


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_real_payload_with_one_byte_changed_is_rejected(path: Path) -> None:
    kind, expect = FOLDERS[path.parent.name]
    body = path.read_bytes()
    headers = signed(kind, body, event=expect(json.loads(body))[0], delivery=DELIVERY)
    with pytest.raises(Unauthorized):
        HOSTS[kind].module.verify(headers, body.replace(b"{", b"{ ", 1), [SECRET])
