"""GitHub push bodies in GitHub's own shape, at the three sizes the receiver benchmarks send.

Written from GitHub's documented push event (the fields and URL templates of its ``repository``,
``owner``, ``sender`` and ``commits`` objects), not copied from a capture:

- ``minimal`` (about 0.5 KB): what a push needs: ref, shas, the repository's names, pusher;
- ``typical`` (about 6.7 KB): what GitHub sends for a one-commit push: the full repository
  object with its owner, the sender, one commit and ``head_commit``;
- ``large`` (about 25 KB): the same with 20 commits, each touching a few files.

Every body is fresh: new shas each call, so no two runs send identical bytes.
"""

from __future__ import annotations

import json
import os
from typing import Any

SIZES = ("minimal", "typical", "large")
API = "https://api.github.com"
WEB = "https://github.com"


def _sha() -> str:
    return os.urandom(20).hex()


def _user(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    """A user or organization object as GitHub embeds it (owner, sender)."""
    url = f"{API}/users/{login}"
    return {
        "name": login, "email": f"{login}@users.noreply.github.com", "login": login, "id": user_id,
        "node_id": "MDQ6VXNlcjE" + str(user_id), "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "", "url": url, "html_url": f"{WEB}/{login}", "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}", "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs", "repos_url": f"{url}/repos", "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events", "type": kind, "user_view_type": "public",
        "site_admin": False,
    }


def _repository(full_name: str) -> dict[str, Any]:
    """The repository object of a push event: every field and URL template GitHub documents."""
    owner, _, name = full_name.partition("/")
    api = f"{API}/repos/{full_name}"
    templates = {
        "forks_url": "/forks", "keys_url": "/keys{/key_id}", "collaborators_url": "/collaborators{/collaborator}",
        "teams_url": "/teams", "hooks_url": "/hooks", "issue_events_url": "/issues/events{/number}",
        "events_url": "/events", "assignees_url": "/assignees{/user}", "branches_url": "/branches{/branch}",
        "tags_url": "/tags", "blobs_url": "/git/blobs{/sha}", "git_tags_url": "/git/tags{/sha}",
        "git_refs_url": "/git/refs{/sha}", "trees_url": "/git/trees{/sha}", "statuses_url": "/statuses/{sha}",
        "languages_url": "/languages", "stargazers_url": "/stargazers", "contributors_url": "/contributors",
        "subscribers_url": "/subscribers", "subscription_url": "/subscription", "commits_url": "/commits{/sha}",
        "git_commits_url": "/git/commits{/sha}", "comments_url": "/comments{/number}",
        "issue_comment_url": "/issues/comments{/number}", "contents_url": "/contents/{+path}",
        "compare_url": "/compare/{base}...{head}", "merges_url": "/merges", "archive_url": "/{archive_format}{/ref}",
        "downloads_url": "/downloads", "issues_url": "/issues{/number}", "pulls_url": "/pulls{/number}",
        "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
        "labels_url": "/labels{/name}", "releases_url": "/releases{/id}", "deployments_url": "/deployments",
    }
    return {
        "id": 688120934, "node_id": "R_kgDOKQQ2Zg", "name": name, "full_name": full_name, "private": False,
        "owner": _user(owner, 7310442, "Organization"), "html_url": f"{WEB}/{full_name}",
        "description": "Mirrors of the widgets service", "fork": False, "url": f"{WEB}/{full_name}",
        **{field: api + suffix for field, suffix in templates.items()},
        "created_at": 1694012345, "updated_at": "2026-01-14T08:00:00Z", "pushed_at": 1768378867,
        "git_url": f"git://github.com/{full_name}.git", "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"{WEB}/{full_name}.git", "svn_url": f"{WEB}/{full_name}", "homepage": None, "size": 2048,
        "stargazers_count": 12, "watchers_count": 12, "language": "Python", "has_issues": True,
        "has_projects": True, "has_downloads": True, "has_wiki": False, "has_pages": False,
        "has_discussions": False, "forks_count": 3, "mirror_url": None, "archived": False, "disabled": False,
        "open_issues_count": 4, "license": {"key": "mit", "name": "MIT License", "spdx_id": "MIT",
                                            "url": f"{API}/licenses/mit", "node_id": "MDc6TGljZW5zZTEz"},
        "allow_forking": True, "is_template": False, "web_commit_signoff_required": False,
        "topics": ["mirrors", "widgets"], "visibility": "public", "forks": 3, "open_issues": 4, "watchers": 12,
        "default_branch": "main", "stargazers": 12, "master_branch": "main", "organization": owner,
    }


def _commit(full_name: str, sha: str, index: int, detailed: bool) -> dict[str, Any]:
    """A commit of the push; ``detailed`` ones have a body and touch more files (a branch's history)."""
    person = {"name": "Mara Okafor", "email": "mara@widgets.example", "username": "mara-okafor"}
    message = f"Calibrate the focal length table ({index})"
    files: dict[str, list[str]] = {"added": [], "removed": [], "modified": ["optics/lens.py"]}
    if detailed:
        message += "\n\nThe table drifted after the lens swap; recompute it from the bench measurements."
        files = {"added": [f"optics/tables/focal_{index}.csv", f"optics/tables/focal_{index}_errors.csv"],
                 "removed": [f"optics/tables/legacy/focal_{index}.dat"],
                 "modified": ["optics/lens.py", "optics/tracking.py", "optics/calibration/bench.py",
                              "docs/calibration.md", "tests/optics/test_lens.py", "tests/optics/test_tracking.py"]}
    return {"id": sha, "tree_id": _sha(), "distinct": True, "message": message,
            "timestamp": "2026-01-14T09:21:07+01:00", "url": f"{WEB}/{full_name}/commit/{sha}",
            "author": person, "committer": person, **files}


def github_push(full_name: str, size: str = "typical", ref: str = "refs/heads/main") -> dict[str, Any]:
    """A push of ``ref`` to ``full_name`` in GitHub's shape, at one of :data:`SIZES`."""
    before, after = _sha(), _sha()
    owner, _, name = full_name.partition("/")
    if size == "minimal":
        return {"ref": ref, "before": before, "after": after,
                "repository": {"id": 688120934, "name": name, "full_name": full_name,
                               "owner": {"login": owner, "id": 7310442}, "html_url": f"{WEB}/{full_name}",
                               "clone_url": f"{WEB}/{full_name}.git", "default_branch": "main"},
                "pusher": {"name": "mara-okafor", "email": "mara@widgets.example"},
                "sender": {"login": "mara-okafor", "id": 5312}, "created": False, "deleted": False,
                "forced": False, "compare": f"{WEB}/{full_name}/compare/{before[:12]}...{after[:12]}"}
    count = {"typical": 1, "large": 20}[size]
    shas = [_sha() for _ in range(count - 1)] + [after]
    commits = [_commit(full_name, sha, index, size == "large") for index, sha in enumerate(shas)]
    return {
        "ref": ref, "before": before, "after": after, "repository": _repository(full_name),
        "pusher": {"name": "mara-okafor", "email": "mara@widgets.example"},
        "sender": _user("mara-okafor", 5312), "created": False, "deleted": False, "forced": False,
        "base_ref": None, "compare": f"{WEB}/{full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": commits, "head_commit": commits[-1],
    }


def body(full_name: str, size: str = "typical", ref: str = "refs/heads/main") -> bytes:
    """The raw bytes GitHub would send (compact JSON)."""
    return json.dumps(github_push(full_name, size, ref), separators=(",", ":")).encode()
