"""Routes: repo, branch and tag globs decide which targets a push reaches."""

from __future__ import annotations

import pytest

from bridge.config import Config
from bridge.events import Push, RefUpdate
from bridge.globs import GlobError, compile_glob
from bridge.routing import route_push


def config(*routes: dict) -> Config:
    return Config.model_validate({
        "sources": {"gh": {"kind": "github", "secret": "x" * 16}, "other": {"kind": "github", "secret": "y" * 16}},
        "targets": {name: {"provider": "mesa", "org": "a", "repo": "b", "token": "t"} for name in "abc"},
        "routes": list(routes),
    })


def push(*refs: str, repo: str = "acme/widgets") -> Push:
    return Push(repo=repo, updates=tuple(RefUpdate(ref, "1" * 40, "2" * 40) for ref in refs), delivery="d")


@pytest.mark.parametrize(("glob", "name", "hit"), [
    ("main", "main", True), ("main", "mainline", False), ("release/*", "release/1.0", True),
    ("release/*", "release/1.0/hotfix", False), ("release/**", "release/1.0/hotfix", True),
    ("v?", "v1", True), ("v[0-9]*", "v10.2", True), ("v[!0-9]*", "v10.2", False), ("*", "feature/x", False),
])
def test_glob_semantics(glob: str, name: str, hit: bool) -> None:
    assert bool(compile_glob(glob).fullmatch(name)) is hit


@pytest.mark.parametrize("bad", ["", "[", "a[b", "x]", "[]"])
def test_bad_globs_are_errors(bad: str) -> None:
    with pytest.raises(GlobError):
        compile_glob(bad)


def test_branch_and_tag_filters() -> None:
    cfg = config({"source": "gh", "repo": "acme/*", "branches": ["main"], "tags": ["v*"], "targets": ["a"]},
                 {"source": "gh", "repo": "acme/widgets", "targets": ["b"]},
                 {"source": "other", "repo": "acme/widgets", "targets": ["c"]})
    assert [m.target for m in route_push(cfg, "gh", push("refs/heads/main"))] == ["a", "b"]
    assert [m.target for m in route_push(cfg, "gh", push("refs/heads/dev"))] == ["b"]
    assert [m.target for m in route_push(cfg, "gh", push("refs/tags/v1.2"))] == ["a", "b"]
    assert [m.target for m in route_push(cfg, "gh", push("refs/tags/nightly"))] == ["b"]
    assert [m.target for m in route_push(cfg, "gh", push("refs/heads/main", repo="ACME/Widgets"))] == ["a", "b"]
    assert route_push(cfg, "gh", push("refs/heads/main", repo="evil/widgets")) == []


def test_omitted_list_takes_all_and_empty_list_none() -> None:
    cfg = config({"source": "gh", "repo": "acme/widgets", "branches": ["main"], "targets": ["a"]},
                 {"source": "gh", "repo": "acme/widgets", "branches": ["main"], "tags": [], "targets": ["b"]})
    assert [m.target for m in route_push(cfg, "gh", push("refs/tags/v1"))] == ["a"]
    assert route_push(cfg, "gh", push("refs/notes/commits")) == []


def test_one_match_per_target_with_the_last_matching_ref() -> None:
    cfg = config({"source": "gh", "repo": "acme/widgets", "targets": ["a", "b"]})
    matches = route_push(cfg, "gh", push("refs/heads/one", "refs/heads/two"))
    assert [(m.target, m.update.ref) for m in matches] == [("a", "refs/heads/two"), ("b", "refs/heads/two")]
