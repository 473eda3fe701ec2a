"""One target for a whole organisation: mirror names rendered from the pushed repository.

Through real processes (web, workers, the sandbox) two repositories pushed through one templated
target reach two mirrors, in jobs of their own that run side by side and coalesce only with their
own repository's pushes; in process, the rest of what a user meets: nested GitLab groups, the
config errors, ``check --online --repo``, providers whose ids are looked up by name, reconciles
and redelivery sweeps of templated targets.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from bridge import mirrors
from bridge.app import create_app
from bridge.config import load
from bridge.embedded import EmbeddedRedis, free_port
from bridge.queueing import Enqueuer
from bridge.routing import Match
from bridge.samples import signed_push
from bridge.store import Store, seen_key
from tests.conftest import SECRET, TOKEN, github_headers, sandbox_calls
from tests.driver import drive
from tests.github_standin import GitHubStandin
from tests.test_end_to_end import running_bridge, wait_until_done
from tests.test_hooks import push_body
from tests.test_worker_mesa import settings


def org_config(sandbox_url: str, target: str = "repo: projects/acme/repos/{name}", provider: str = "google-csr",
               prefix: str = "/google", route: str = "acme/*", source: str = "") -> str:
    """A GitHub source routed (``route``) to one templated target, ``acme-mirrors``, on the sandbox."""
    return f"""
sources:
  github:
    kind: github
    secret: {SECRET}{source}
targets:
  acme-mirrors:
    provider: {provider}
    base_url: {sandbox_url}{prefix}
    {target}
    token: {TOKEN}
    min_interval: 0
routes:
  - source: github
    repo: "{route}"
    targets: [acme-mirrors]
"""


def send(url: str, repo: str, after: str, delivery: str) -> str:
    """A signed push of ``repo`` to a running bridge; the id of its one job."""
    body = push_body(repo=repo, after=after)
    response = requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, delivery=delivery),
                             timeout=5)
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    return job["id"]


def wait_for_status(url: str, job_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record = requests.get(f"{url}/jobs/{job_id}", timeout=5).json()
    while record["status"] != status and time.monotonic() < deadline:
        time.sleep(0.05)
        record = requests.get(f"{url}/jobs/{job_id}", timeout=5).json()
    assert record["status"] == status, record
    return record


def syncs(sandbox: Any) -> list[str]:
    """The paths the Google stand-in was asked to sync, in order."""
    return [call["path"] for call in sandbox_calls(sandbox, "google-csr") if call["method"] == "POST"]


def test_two_repositories_through_one_templated_target_reach_two_mirrors_in_separate_jobs(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    settings(sandbox, "google-csr", seconds=3)  # each sync runs 3 s: long enough to push while it runs
    path = tmp_path / "syncbridge.yml"
    path.write_text(org_config(sandbox.url))
    with running_bridge(path, redis_server.url) as url:
        widgets = send(url, "acme/widgets", "1" * 40, "w-1")
        gadgets = send(url, "acme/gadgets", "2" * 40, "g-1")
        wait_for_status(url, widgets, "in_progress")
        wait_for_status(url, gadgets, "in_progress")  # both mirrors sync at once: neither waits for the other
        # While they run, more pushes: each repository's queue one follow-up of their own.
        widgets_next = [send(url, "acme/widgets", sha * 40, f"w-{sha}") for sha in ("3", "4")]
        gadgets_next = send(url, "acme/gadgets", "5" * 40, "g-5")
        records = {job_id: wait_until_done(f"{url}/jobs/{job_id}")
                   for job_id in (widgets, gadgets, *widgets_next, gadgets_next)}
        listed = requests.get(f"{url}/jobs", params={"target": "acme-mirrors"}, timeout=5).json()["jobs"]
    assert widgets_next[0] == widgets_next[1]  # the second follow-up push joined the first: same repository
    assert len(records) == 4 and len({widgets, gadgets, widgets_next[0], gadgets_next}) == 4
    assert all(record["status"] == "completed" for record in records.values()), records
    for record in records.values():
        assert record["mirror"] == f"projects/acme/repos/{record['repo'].split('/')[1]}", record
        assert record["target"] == "acme-mirrors" and record["provider"] == "google-csr"
    assert records[widgets_next[0]]["after"] == "4" * 40 and records[gadgets_next]["after"] == "5" * 40
    # One sync at a time per mirror, and the two mirrors independent of each other.
    assert records[widgets_next[0]]["started_at"] >= records[widgets]["finished_at"]
    assert records[gadgets_next]["started_at"] >= records[gadgets]["finished_at"]
    assert records[gadgets]["started_at"] < records[widgets]["finished_at"]
    assert records[widgets]["started_at"] < records[gadgets]["finished_at"]
    assert sorted(job["id"] for job in listed) == sorted(records)
    assert sorted(syncs(sandbox)) == ["/google/v1/projects/acme/repos/gadgets:sync"] * 2 + [
        "/google/v1/projects/acme/repos/widgets:sync"] * 2


def test_repositories_that_render_to_one_mirror_share_it_one_sync_at_a_time(write_config, redis: Redis,
                                                                            sandbox: Any) -> None:
    """The mirror is what the name renders to, not the repository: ``{owner}`` sends all of acme to one."""
    client = create_app(write_config(org_config(sandbox.url, "repo: projects/mirrors/repos/{owner}")),
                        redis).test_client()
    jobs = []
    for repo, delivery in (("acme/widgets", "d-1"), ("acme/gadgets", "d-2")):
        body = push_body(repo=repo)
        jobs += client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery)).json["jobs"]
    drive(redis)
    first, second = sorted((client.get(f"/jobs/{job['id']}").json for job in jobs), key=lambda job: job["started_at"])
    assert first["mirror"] == second["mirror"] == "projects/mirrors/repos/acme"
    assert {first["repo"], second["repo"]} == {"acme/widgets", "acme/gadgets"}  # two jobs: lanes stay per repo
    assert second["started_at"] >= first["finished_at"]
    assert syncs(sandbox) == ["/google/v1/projects/mirrors/repos/acme:sync"] * 2


def test_a_nested_gitlab_group_renders_owner_as_the_groups_and_name_as_the_last_segment(
        write_config, redis: Redis, sandbox: Any) -> None:
    text = org_config(sandbox.url, "project: '{owner}/mirror-of-{name}'", "gitlab-mirror", "/gitlab",
                      route="group/**").replace("kind: github", "kind: gitlab").replace("source: github",
                                                                                        "source: gitlab")
    client = create_app(write_config(text.replace("  github:\n", "  gitlab:\n")), redis).test_client()
    headers, body = signed_push("gitlab", "group/sub/widgets", "refs/heads/main", "0" * 40, "a" * 40, SECRET.encode())
    response = client.post("/hooks/gitlab", data=body, headers=headers)
    assert response.status_code == 202, response.json
    drive(redis)
    record = client.get(f"/jobs/{response.json['jobs'][0]['id']}").json
    assert record["status"] == "completed", record
    assert record["repo"] == "group/sub/widgets" and record["mirror"] == "group/sub/mirror-of-widgets"
    assert {call["path"] for call in sandbox_calls(sandbox, "gitlab-mirror")} == {
        "/gitlab/api/v4/projects/group%2Fsub%2Fmirror-of-widgets/mirror/pull"}


def test_a_target_that_names_one_mirror_shows_no_rendered_mirror(write_config, redis: Redis, sandbox: Any) -> None:
    client = create_app(write_config(org_config(sandbox.url, "repo: projects/acme/repos/widgets")),
                        redis).test_client()
    body = push_body()
    [job] = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="d-1")).json["jobs"]
    drive(redis)
    record = client.get(f"/jobs/{job['id']}").json
    assert record["status"] == "completed" and record["mirror"] is None
    assert list(record)[list(record).index("target") + 1] == "mirror"


def test_the_dashboard_and_chat_messages_show_the_rendered_mirror(write_config, redis: Redis, sandbox: Any) -> None:
    from workers.notify import message

    client = create_app(write_config(org_config(sandbox.url)), redis).test_client()
    body = push_body(repo="acme/gadgets", after="a" * 40)
    [job] = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="d-1")).json["jobs"]
    drive(redis)
    html = client.get("/").get_data(as_text=True)
    assert ">acme-mirrors</a><br><small>projects/acme/repos/gadgets</small></td>" in html
    page = client.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "(google-csr, mirror projects/acme/repos/gadgets)" in page
    title, text = message(client.get(f"/jobs/{job['id']}").json)
    assert title == "✅ acme-mirrors: acme/gadgets@main completed"
    assert text.startswith("acme/gadgets refs/heads/main (aaaaaaa) → acme-mirrors (google-csr "
                           "projects/acme/repos/gadgets): completed in ")


def test_a_repository_name_that_cannot_name_a_mirror_fails_its_job_with_the_reason(
        write_config, redis: Redis, sandbox: Any) -> None:
    config = write_config(org_config(sandbox.url))
    receipt = Enqueuer(redis, config.retention).enqueue(
        "github", "acme/..", "d-1", [Match("acme-mirrors", None, None)], config.targets)
    drive(redis)
    record = Store(redis, config.retention).get(receipt.job_ids[0])
    assert record is not None and record["status"] == "failed"
    assert record["error"] == ("the repository name 'acme/..' cannot name a mirror (a '.', '..' or empty path "
                               "segment, whitespace, or one of ? # % \\)")
    assert syncs(sandbox) == []


# --- providers that take an id: looked up by name, once ---------------------------------------


def test_a_templated_azure_fork_syncs_from_its_parent_read_once_from_azure(write_config, redis: Redis,
                                                                           sandbox: Any) -> None:
    text = org_config(sandbox.url, "organization: acme\n    project: Forks\n    repository: '{name}-fork'",
                      "azure-devops", "/azure")
    client = create_app(write_config(text), redis).test_client()
    for delivery in ("d-1", "d-2"):  # the second sync of the fork: its parent is known by now
        body = push_body(repo="acme/widgets")
        client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
        drive(redis)
    calls = sandbox_calls(sandbox, "azure-devops")
    fork = "/azure/acme/Forks/_apis/git/repositories/widgets-fork"
    reads = [call for call in calls if call["method"] == "GET" and call["path"] == fork]
    requested = [call["json"]["source"] for call in calls if call["method"] == "POST"]
    assert len(reads) <= 1 and len(requested) == 2  # read once per worker process at most, never per sync
    parent = requests.get(f"{sandbox.url}{fork}", params={"api-version": "7.1"}, auth=("", TOKEN),
                          timeout=5).json()["parentRepository"]
    assert requested == [{"collectionId": parent["collection"]["id"], "projectId": parent["project"]["id"],
                          "repositoryId": parent["id"]}] * 2


def test_an_azure_repository_that_is_no_fork_fails_with_the_reason(write_config, redis: Redis, sandbox: Any) -> None:
    settings(sandbox, "azure-devops", fork=False)
    text = org_config(sandbox.url, "organization: acme\n    project: Originals\n    repository: '{name}'",
                      "azure-devops", "/azure")
    client = create_app(write_config(text), redis).test_client()
    body = push_body(repo="acme/gadgets")
    [job] = client.post("/hooks/github", data=body, headers=github_headers(body, delivery="d-1")).json["jobs"]
    drive(redis)
    record = client.get(f"/jobs/{job['id']}").json
    assert record["status"] == "failed" and record["mirror"] == "Originals/gadgets"
    assert record["error"] == ("azure-devops: Originals/gadgets is not a fork (Azure DevOps names no parent "
                               "repository with its collection and project), so there is nothing to sync it from: "
                               "point `repository` at a fork, or give `source`")


def test_a_templated_codearts_repository_is_found_by_its_group_and_name(write_config, redis: Redis,
                                                                        sandbox: Any) -> None:
    text = org_config(sandbox.url, "repository: 'mirrors/{name}'", "codearts", "/codearts")
    client = create_app(write_config(text), redis).test_client()
    for repo, delivery in (("acme/widgets", "d-1"), ("acme/widgets", "d-2"), ("acme/gadgets", "d-3")):
        body = push_body(repo=repo)
        client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery))
        drive(redis)
    calls = sandbox_calls(sandbox, "codearts")
    lookups = [call["query"] for call in calls if call["path"] == "/codearts/v1/repositories/repoid"]
    assert {"group_name": "mirrors", "repository_name": "gadgets"} in lookups
    assert lookups.count({"group_name": "mirrors", "repository_name": "widgets"}) <= 1  # kept once found
    ids = {}
    for query in ({"group_name": "mirrors", "repository_name": name} for name in ("widgets", "gadgets")):
        ids[query["repository_name"]] = requests.get(f"{sandbox.url}/codearts/v1/repositories/repoid", params=query,
                                                     headers={"X-Auth-Token": TOKEN}, timeout=5).json()["result"]
    triggered = [call["path"] for call in calls if call["method"] == "POST"]
    assert triggered == [f"/codearts/v4/repositories/{ids[name]}/remote-mirror"
                         for name in ("widgets", "widgets", "gadgets")]
    assert ids["widgets"] != ids["gadgets"]


# --- the config and `syncbridge check` ---------------------------------------------------------


def with_targets(tmp_path: Path, targets: str, routes: str = "") -> Path:
    """A config file of one GitHub source and the ``targets`` given (the YAML under ``targets:``)."""
    path = tmp_path / "syncbridge.yml"
    path.write_text(f"sources:\n  gh: {{kind: github, secret: {SECRET}}}\ntargets:{targets}{routes}")
    return path


def check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "SYNCBRIDGE_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "bridge", "check", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_check_names_the_key_of_each_placeholder_it_cannot_fill(tmp_path: Path) -> None:
    path = with_targets(tmp_path, """
  forks:
    provider: azure-devops
    organization: acme
    project: Forks
    repository: "{name}"
    source: {collection_id: "{owner}", project_id: p, repository_id: r}
    token: t
  codearts:
    provider: codearts
    base_url: https://codehub.example
    repository_id: "{name}"
    token: t
  typo: {provider: google-csr, repo: "projects/acme/repos/{nmae}", token: t}
  url: {provider: gitea-mirror, base_url: "https://{owner}.example", repo: "{owner}/{name}", token: t}
""", """routes:
  - {source: gh, repo: "acme/*", targets: [forks, codearts, typo, url]}
""")
    result = check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: {line}" for line in [
        "targets.forks.source.collection_id: {owner} cannot be filled here: Azure DevOps' GUIDs cannot be derived "
        "from a repository name; leave `source` out and the bridge reads each fork's parent from Azure DevOps",
        "targets.codearts.repository_id: {name} cannot be filled here: it is CodeArts' numeric id, which no name "
        "renders to: write `repository: {owner}/{name}` instead, and the bridge asks CodeArts for the id",
        "targets.typo.repo: unknown placeholder {nmae}: a mirror's name takes {owner}, {name} or {repo}",
        "targets.url.base_url: {owner} cannot be filled here: placeholders are filled only in the fields that name "
        "the mirror (here: repo)",
        "targets.forks: `source` names one parent repository, but `repository` is templated, so each push syncs "
        "another fork, each with its own parent: leave `source` out and the bridge reads each fork's parent from "
        "Azure DevOps",
    ]]


def test_a_templated_mirror_name_must_still_have_the_providers_shape(tmp_path: Path) -> None:
    path = with_targets(tmp_path, """
  csr: {provider: google-csr, repo: "{name}", token: t}
  gitea: {provider: gitea-mirror, base_url: https://gitea.example, repo: "{repo}", token: t}
""")
    result = check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: targets.csr.repo: must be projects/<project>/repos/<name> once its placeholders are filled"]


def test_check_online_reads_one_rendered_repository_per_templated_target(tmp_path: Path, sandbox: Any) -> None:
    path = with_targets(tmp_path, f"""
  acme-csr: {{provider: google-csr, base_url: "{sandbox.url}/google", repo: "projects/acme/repos/{{name}}",
             token: {TOKEN}}}
  forks: {{provider: azure-devops, base_url: "{sandbox.url}/azure", organization: acme, project: Forks,
          repository: "{{name}}-fork", token: {TOKEN}}}
  codearts: {{provider: codearts, base_url: "{sandbox.url}/codearts", repository: "{{owner}}/{{name}}", token: {TOKEN}}}
  fixed: {{provider: mesa, base_url: "{sandbox.url}/mesa/v1", org: acme, repo: widgets, token: {TOKEN}}}
""")
    without = check(path, "--online")
    assert without.returncode == 0, without.stdout + without.stderr
    assert ("acme-csr (google-csr): SKIPPED: its mirror is named after the pushed repository; check it for one "
            "with --repo owner/name") in without.stdout
    assert "fixed (mesa): OK" in without.stdout
    requests.delete(f"{sandbox.url}/_sandbox/calls", timeout=5).raise_for_status()
    result = check(path, "--online", "--repo", "acme/gadgets")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("acme-csr (google-csr) projects/acme/repos/gadgets: OK", "forks (azure-devops) Forks/gadgets-fork: OK",
                 "codearts (codearts) acme/gadgets: OK", "fixed (mesa): OK"):
        assert line in result.stdout.splitlines(), result.stdout
    calls = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]
    assert {call["method"] for call in calls} == {"GET"}
    assert {"/google/v1/projects/acme/repos/gadgets", "/azure/acme/Forks/_apis/git/repositories/gadgets-fork",
            "/codearts/v1/repositories/repoid"} <= {call["path"] for call in calls}


# --- reconciles and redelivery sweeps ----------------------------------------------------------


def test_a_templated_targets_reconcile_syncs_each_repository_pushed_through_it(
        write_config, redis: Redis, sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    from workers.periodic import reconcile

    config = write_config(org_config(sandbox.url, "repo: projects/acme/repos/{name}\n    reconcile_every: 1h"))
    store = Store(redis, config.retention)
    with caplog.at_level(logging.WARNING, logger="syncbridge.periodic"):
        assert reconcile(store, "acme-mirrors", time.time()) == []  # no push yet: no repository known
    assert ("reconcile of acme-mirrors: nothing to sync: it is templated (its mirror is named after the pushed "
            "repository) and no push went through it within the retention (7 days)") in caplog.text
    client = create_app(config, redis).test_client()

    def push(repo: str, delivery: str) -> None:
        body = push_body(repo=repo)
        assert client.post("/hooks/github", data=body, headers=github_headers(body, delivery=delivery)).status_code \
            == 202

    push("acme/widgets", "d-1")
    push("acme/gadgets", "d-2")
    drive(redis)
    requests.delete(f"{sandbox.url}/_sandbox/calls", timeout=5).raise_for_status()
    push("acme/widgets", "d-3")  # waits in the queue: that sync covers widgets' mirror, the reconcile leaves it
    [reconciled] = reconcile(store, "acme-mirrors", time.time())
    assert reconcile(store, "acme-mirrors", time.time()) == []  # both mirrors have a sync waiting now
    drive(redis)
    record = client.get(f"/jobs/{reconciled}").json
    assert record["status"] == "completed" and record["trigger"] == "reconcile" and record["delivery"] is None
    assert record["repo"] == "acme/gadgets" and record["mirror"] == "projects/acme/repos/gadgets"
    assert sorted(syncs(sandbox)) == ["/google/v1/projects/acme/repos/gadgets:sync",
                                      "/google/v1/projects/acme/repos/widgets:sync"]
    later = reconcile(store, "acme-mirrors", time.time() + 3600)  # the next period: every repository pushed
    assert {client.get(f"/jobs/{job_id}").json["repo"] for job_id in later} == {"acme/widgets", "acme/gadgets"}


def test_the_repositories_a_reconcile_remembers_are_the_latest_few_within_the_retention(redis: Redis) -> None:
    store = Store(redis, retention=3600)
    for n in range(5):
        store.note_seen("acme-mirrors", f"acme/repo-{n}", limit=3)
    assert sorted(store.seen("acme-mirrors")) == ["acme/repo-2", "acme/repo-3", "acme/repo-4"]
    redis.zadd(seen_key("acme-mirrors"), {"acme/repo-4": time.time() - 7200})  # its last push: before the retention
    assert sorted(store.seen("acme-mirrors")) == ["acme/repo-2", "acme/repo-3"]
    assert 0 < redis.ttl(seen_key("acme-mirrors")) <= 3600


def test_a_push_missed_while_the_bridge_was_down_reaches_its_own_rendered_mirror(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    port = free_port()
    standin = GitHubStandin("ghs_templated_sweep", hook_url=f"http://127.0.0.1:{port}/hooks/github", secret=SECRET)
    try:
        missed = standin.push(push_body(repo="acme/gadgets", after="9" * 40))  # the bridge is not running yet
        path = tmp_path / "syncbridge.yml"
        path.write_text(org_config(sandbox.url, source=f"""
    api:
      token: ghs_templated_sweep
      hook: {{repo: acme/widgets, id: 42}}
      base_url: {standin.url}
      sweep_every: 1h"""))
        with running_bridge(path, redis_server.url, processes=1, port=port, SYNCBRIDGE_TICK_SECONDS="1") as url:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    requests.get(f"{url}/deliveries/{missed}", timeout=5).status_code != 200:
                time.sleep(0.2)
            [job] = requests.get(f"{url}/deliveries/{missed}", timeout=5).json()["jobs"]
            record = wait_until_done(f"{url}/jobs/{job['id']}")
    finally:
        standin.close()
    assert standin.deliveries[-1]["redelivery"] is True
    assert record["status"] == "completed" and record["after"] == "9" * 40
    assert record["mirror"] == "projects/acme/repos/gadgets"
    assert syncs(sandbox) == ["/google/v1/projects/acme/repos/gadgets:sync"]


# --- the web side's cache of mirror keys -------------------------------------------------------


def test_mirror_keys_are_rendered_per_target_and_repository_and_stay_right_past_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(org_config("http://sandbox.invalid", "org: '{owner}'\n    repo: 'mirror-{name}'", "mesa",
                               "/mesa/v1"))
    target = load(path, env={}).targets["acme-mirrors"]
    keys = mirrors.MirrorKeys(size=2)
    names = [f"acme/repo-{n}" for n in range(5)]
    for _ in range(2):  # the second round after the cache started over
        assert [keys.key("acme-mirrors", target, repo) for repo in names] == [
            f"acme-mirrors:acme/mirror-repo-{n}" for n in range(5)]
    path.write_text(path.read_text().replace("mirror-{name}", "copy-{name}"))
    reloaded = load(path, env={})  # a target of another config: never served the first one's keys
    assert keys.key("acme-mirrors", reloaded.targets["acme-mirrors"], "acme/repo-4") == "acme-mirrors:acme/copy-repo-4"
    assert mirrors.parts("group/sub/widgets") == {"owner": "group/sub", "name": "widgets", "repo": "group/sub/widgets"}
