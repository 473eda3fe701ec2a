"""The operators' console, server-side: a job's page, the delivery log, target cards, filters and pages.

Through the Flask app on a real Redis, jobs driven by a real RQ worker against the provider
sandbox; what a browser does with the pages is in tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job

from bridge import redact
from bridge.app import create_app
from bridge.config import Config
from bridge.deliveries import KEPT, UNKNOWN_SOURCE_KEY, DeliveryLog, stream_key
from bridge.embedded import EmbeddedRedis
from bridge.hooks import Answer
from bridge.limits import Limits
from bridge.receiver import Receiver
from bridge.store import CALLS_KEPT, Store, calls_key
from tests.conftest import SECRET, TOKEN, github_headers, mesa_config
from tests.driver import drive
from tests.test_hooks import push_body
from tests.test_reliability import until, web_process
from tests.test_worker_mesa import faults, settings

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends


def config_text(sandbox: Any) -> str:
    """Every repository of acme on GitHub to one Mesa target on the sandbox; jobs and deliveries kept an hour."""
    text = mesa_config(sandbox.url).replace("targets:\n", "retention: 1h\n        targets:\n", 1)
    return text.replace("repo: acme/widgets\n            targets:", "repo: 'acme/*'\n            targets:")


@pytest.fixture
def client(write_config: Callable[[str], Config], redis: Redis, sandbox: Any) -> FlaskClient:
    return create_app(write_config(config_text(sandbox)), redis).test_client()


def push(client: FlaskClient, delivery: str, after: str = "a" * 40, secret: str = SECRET,
         repo: str = "acme/widgets", **headers: str) -> Any:
    body = push_body(repo=repo, after=after)
    return client.post("/hooks/github", data=body,
                       headers={**github_headers(body, delivery=delivery, secret=secret), **headers})


def text(html: str) -> str:
    """The page's words, as a person reads them (tags dropped, spaces collapsed)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_a_jobs_page_shows_its_record_timeline_provider_words_and_the_delivery_that_fed_it(
        client: FlaskClient, redis: Redis, sandbox: Any) -> None:
    settings(sandbox, "mesa", polls=2)
    faults(sandbox, "mesa", {"timeout": 0}, {"status": 503})  # the trigger goes through; the first poll: 503
    job_id = push(client, "page-1", after="c0ffee" + "0" * 34, **{"User-Agent": "GitHub-Hookshot/0a1b2c"}) \
        .get_json()["jobs"][0]["id"]
    drive(redis)
    page = client.get(f"/jobs/{job_id}", headers=HTML)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    words = text(html)
    assert "widgets-mesa completed" in words and "acme/widgets @ refs/heads/main" in words
    assert "c0ffee" + "0" * 34 in words and "page-1 from github" in words
    timeline = re.findall(r'<tr class="event ev-(\w+)">', html)
    assert timeline[:3] == ["queued", "started", "trigger"] and timeline[-1] == "completed"
    assert timeline.count("poll") >= 2, timeline  # the 503, then polls until the provider said completed
    rows = re.findall(r'<tr class="event ev-poll">(.*?)</tr>', html, re.S)
    assert "503" in rows[0] and "transient" in rows[0] and " ms" in rows[0]
    assert "200" in rows[-1] and "completed" in rows[-1]
    assert "The provider's own words" in html and re.search(r"<dt>status</dt><dd><code>completed</code>", html)
    fed = html.split("Deliveries that fed it")[1]
    assert "page-1" in fed and "github" in fed and "acme/widgets" in fed and "c0ffee" in fed and "<time" in fed
    assert "data-retry" not in html  # completed: nothing to retry
    # The same URL is JSON for everyone else, exactly as INTERFACE.md shows a job.
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "completed" and "calls" not in record
    assert client.get(f"/jobs/{job_id}?format=json", headers=HTML).get_json() == record
    assert client.get(f"/jobs/{job_id}?format=html").mimetype == "text/html"
    assert client.get(f"/jobs/{job_id}?format=xml").status_code == 400


def test_each_provider_call_is_recorded_bounded_and_scrubbed(client: FlaskClient, redis: Redis,
                                                             sandbox: Any) -> None:
    faults(sandbox, "mesa", {"status": 403, "message": "denied, you sent {request}"})
    job_id = push(client, "calls-1").get_json()["jobs"][0]["id"]
    drive(redis)
    store = Store(redis, 3600)
    [call] = store.calls(job_id)
    assert call["kind"] == "trigger" and call["http"] == 403 and call["state"] == "permanent"
    assert "denied" in call["error"] and call["at"] and call["ms"] >= 0
    assert TOKEN not in redis.lrange(calls_key(job_id), 0, -1)[0].decode()  # the provider quoted our token
    assert "***" in call["error"]
    for n in range(CALLS_KEPT + 10):
        store.record_call(job_id, {"at": f"2030-01-01T00:00:{n:02d}.000Z", "kind": "poll", "n": n})
    calls = store.calls(job_id)
    assert len(calls) == CALLS_KEPT and calls[-1]["n"] == CALLS_KEPT + 9  # the newest are kept
    assert 0 < redis.ttl(calls_key(job_id)) <= 3600


def test_the_delivery_log_says_what_became_of_every_delivery_refused_ones_too(client: FlaskClient,
                                                                             redis: Redis) -> None:
    agent = {"User-Agent": "GitHub-Hookshot/0a1b2c"}
    accepted = push(client, "log-1", **agent).get_json()
    assert push(client, "log-2", secret="not-the-right-secret", **agent).status_code == 401
    body = push_body()
    assert client.post("/hooks/github", data=body, headers={"X-GitHub-Event": "push",
                                                            "Content-Type": "application/json"}).status_code == 401
    assert push(client, "log-1", **agent).status_code == 200  # a redelivery
    assert push(client, "log-3", after="b" * 40).status_code == 202  # joins the job still waiting
    assert client.post("/hooks/gihub", data=body, headers=github_headers(body, delivery="log-4")).status_code == 404
    assert client.post("/hooks/github", data=body, headers={**github_headers(body, delivery="log-5"),
                                                            "Content-Encoding": "gzip"}).status_code == 415
    listed = client.get("/deliveries").get_json()
    assert listed["more"] is False
    entries = {entry["delivery"] or "(none)": entry for entry in listed["deliveries"]}
    job_id = accepted["jobs"][0]["id"]
    first = [e for e in listed["deliveries"] if e["delivery"] == "log-1"]
    assert [e["status"] for e in first] == [200, 202]  # newest first: the redelivery, then the original
    assert first[1]["verdict"] == "accepted: 1 job queued" and first[1]["event"] == "push"
    assert first[1]["agent"] == "GitHub-Hookshot/0a1b2c" and first[1]["signed"] is True
    assert first[1]["jobs"] == [{"id": job_id, "target": "widgets-mesa", "how": "created"}]
    assert first[1]["repo"] == "acme/widgets" and first[1]["ref"] == "refs/heads/main"
    assert first[0]["verdict"].startswith("a redelivery") and first[0]["jobs"][0]["how"] == "redelivered"
    assert entries["log-2"]["verdict"] == "received, signature did not match"
    assert "does not match" in entries["log-2"]["reason"] and entries["log-2"]["jobs"] == []
    assert entries["(none)"]["verdict"] == "received without a signature or token"
    assert entries["(none)"]["signed"] is False
    assert entries["log-3"]["jobs"] == [{"id": job_id, "target": "widgets-mesa", "how": "joined"}]
    assert entries["log-3"]["verdict"] == "accepted: 0 jobs queued, 1 waiting joined"
    assert entries["log-5"]["status"] == 415
    assert entries["log-4"]["source"] == "gihub" and entries["log-4"]["verdict"].startswith("unknown source")
    # Unknown sources have a log of their own: a scanner inventing names cannot push a source's out.
    [unknown] = client.get("/deliveries?source=(unknown)").get_json()["deliveries"]
    assert unknown["delivery"] == "log-4" and unknown["status"] == 404
    assert "log-4" not in {e["delivery"] for e in client.get("/deliveries?source=github").get_json()["deliveries"]}
    # Never a signature's value, anywhere in the log.
    stored = b" ".join(value for key in (stream_key("github"), UNKNOWN_SOURCE_KEY)
                       for _, fields in redis.xrange(key) for value in fields.values())
    signature = github_headers(body, delivery="x")["X-Hub-Signature-256"].encode()
    assert signature not in stored and SECRET.encode() not in stored
    # Filters, and a delivery's own view: the refused one is "received", not "unknown".
    refused = client.get("/deliveries?status=refused").get_json()["deliveries"]
    assert {e["status"] for e in refused} == {401, 404, 415}
    assert [e["delivery"] for e in client.get("/deliveries?status=401").get_json()["deliveries"]] == ["", "log-2"]
    one = client.get("/deliveries/log-2?source=github").get_json()
    assert one["jobs"] == [] and one["received"][0]["verdict"] == "received, signature did not match"
    page = text(client.get("/deliveries", headers=HTML).get_data(as_text=True))
    assert "received, signature did not match" in page and "GitHub-Hookshot/0a1b2c" in page
    for bad in ("status=maybe", "source=nope", "before=x", "limit=some"):
        assert client.get(f"/deliveries?{bad}").status_code == 400, bad


def test_the_delivery_log_pages_and_is_bounded_in_length_and_time(write_config: Callable[[str], Config],
                                                                  redis: Redis, sandbox: Any) -> None:
    config = write_config(config_text(sandbox))
    log = DeliveryLog(config, redis)
    refused = Answer(401, {"error": "X-Hub-Signature-256 does not match the body"}, outcome="unauthorized")
    for start in range(0, KEPT + 300, 250):
        for n in range(start, min(start + 250, KEPT + 300)):
            log.add("github", {"X-GitHub-Delivery": f"many-{n}", "X-Hub-Signature-256": "sha256=00"}, refused)
        pipe = redis.pipeline()
        log.write(pipe, log.take()[0])
        pipe.execute()
    assert KEPT <= redis.xlen(stream_key("github")) < KEPT + 300  # trimmed (approximately, as Redis trims)
    assert 3500 < redis.ttl(stream_key("github")) <= 3600
    client = create_app(config, redis).test_client()
    first = client.get("/deliveries?limit=100").get_json()
    assert first["more"] and [e["delivery"] for e in first["deliveries"]][:2] == [f"many-{KEPT + 299}",
                                                                                  f"many-{KEPT + 298}"]
    second = client.get(f"/deliveries?limit=100&before={first['deliveries'][-1]['id']}").get_json()
    assert second["deliveries"][0]["delivery"] == f"many-{KEPT + 199}"
    page = client.get("/deliveries", headers=HTML).get_data(as_text=True)
    assert "older &rarr;" in page and "before=" in page


def test_a_burst_keeps_the_newest_per_stream_and_counts_the_rest(write_config: Callable[[str], Config], redis: Redis,
                                                                  redis_server: EmbeddedRedis, sandbox: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)  # the edge's own connection
    app = create_app(write_config(mesa_config(sandbox.url)), redis)
    receiver = Receiver(app, Limits.from_environ(), threads=1)
    log = receiver.bridge.deliveries = DeliveryLog(receiver.bridge.config, redis, kept=3)
    for index in range(5):
        log.add("github", {"X-GitHub-Delivery": f"burst-{index}"}, Answer(401, {"error": "no"}))
    log.add("nope", {}, Answer(404, {"error": "unknown source"}))  # another stream: a buffer of its own
    seen, dropped = log.take()
    assert [entry[3] for entry in seen] == ["burst-2", "burst-3", "burst-4", ""]  # each one's delivery id
    assert dropped == 2 and log.take() == ([], 0)
    for index in range(3):  # the edge takes a tick's newest few of each stream
        log.add("github", {"X-GitHub-Delivery": f"tick-{index}"}, Answer(401, {"error": "no"}))
    newest, missed = log.take(newest=2)
    assert [entry[3] for entry in newest] == ["tick-1", "tick-2"] and missed == 1

    async def flush() -> None:  # what the edge's flush does, on its own connection
        for keys, args in log.calls(seen):
            await receiver.log_script(keys, args)
        await receiver.log_script.close()

    asyncio.run(flush())
    receiver._count(Counter({("github", "unauthorized"): 5}), dropped + missed)
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "syncbridge_deliveries_unlogged_total 3.0" in metrics
    assert 'syncbridge_webhooks_received_total{outcome="unauthorized",source="github"} 5.0' in metrics
    assert redis.xlen(stream_key("github")) == 3 and redis.xlen(stream_key(None)) == 1


def test_target_cards_say_what_a_target_does_now_and_a_failing_one_looks_failing(
        client: FlaskClient, redis: Redis, sandbox: Any) -> None:
    def card() -> dict[str, Any]:
        return client.get("/dashboard.json").get_json()["targets"][0]

    assert card()["state"] == "idle" and card()["last_success"] is None and not card()["failing"]
    first = push(client, "card-1").get_json()["jobs"][0]["id"]
    assert card()["state"] == "queued"
    settings(sandbox, "mesa", polls=3)
    drive(redis, max_rounds=1, until_idle=False)  # triggered, now following the provider's operation
    assert card()["state"] == "running"
    drive(redis)
    assert card()["state"] == "idle" and card()["last_success"]["job"] == first and not card()["failing"]
    faults(sandbox, "mesa", {"status": 403, "message": "this token may not sync acme/widgets"})
    second = push(client, "card-2", after="d" * 40).get_json()["jobs"][0]["id"]
    drive(redis)
    now = card()
    assert now["failing"] and now["last_failure"]["job"] == second and now["last_success"]["job"] == first
    assert "may not sync" in now["last_failure"]["error"]
    html = client.get("/").get_data(as_text=True)
    [failing] = re.findall(r'<div class="target failing" data-target="widgets-mesa">(.*?)</div>\s*</div>', html, re.S)
    assert "last failure" in failing and "may not sync" in failing and "idle" in failing


def test_filters_match_any_part_and_pages_go_past_a_hundred_jobs(client: FlaskClient, redis: Redis) -> None:
    store = Store(redis, 3600)
    ids = []
    for n in range(130):
        job_id = push(client, f"many-{n}", repo="acme/widgets" if n % 2 else "acme/gadgets").get_json()["jobs"][0]["id"]
        store.finish(job_id, "failed" if n % 3 == 0 else "completed", error="boom" if n % 3 == 0 else None)
        ids.append(job_id)
    newest_first = ids[::-1]
    one = client.get("/dashboard.json").get_json()
    assert [job["id"] for job in one["jobs"]] == newest_first[:100] and one["more"] and one["page"] == 1
    two = client.get("/dashboard.json?page=2").get_json()
    assert [job["id"] for job in two["jobs"]] == newest_first[100:] and not two["more"]
    gadgets = client.get("/dashboard.json?repo=GADG&status=failed").get_json()["jobs"]
    assert {job["repo"] for job in gadgets} == {"acme/gadgets"} and {job["status"] for job in gadgets} == {"failed"}
    assert len(gadgets) == len([n for n in range(130) if n % 2 == 0 and n % 3 == 0])
    assert len(client.get("/dashboard.json?target=mesa").get_json()["jobs"]) == 100
    # The filters are in the page's URL and its form: a reload (or a refresh) keeps them.
    html = client.get("/?status=failed&repo=gadg").get_data(as_text=True)
    assert '<option value="failed" selected>' in html and 'name="repo" value="gadg"' in html
    page = client.get("/?page=1").get_data(as_text=True)
    assert 'href="/?page=2"' in page and "older &rarr;" in page
    assert 'href="/?page=1&amp;status=failed"' in client.get("/?page=2&status=failed").get_data(as_text=True)
    # Times for people, with the absolute time on hover.
    assert re.search(r'<time datetime="[0-9T:.-]+Z" title="[0-9T:.-]+Z">(just now|\d+ s ago)</time>', page)
    for bad in ("status=done", "page=0", "page=x"):
        assert client.get(f"/?{bad}").status_code == 400, bad
    # The API's filters stay exact (INTERFACE.md), the dashboard's match parts.
    assert client.get("/jobs?repo=gadg").get_json()["jobs"] == []


def test_a_failed_job_is_retried_from_its_page_and_the_retry_joins_its_timeline(client: FlaskClient, redis: Redis,
                                                                                sandbox: Any) -> None:
    faults(sandbox, "mesa", {"status": 403})
    job_id = push(client, "retry-1").get_json()["jobs"][0]["id"]
    drive(redis)
    html = client.get(f"/jobs/{job_id}", headers=HTML).get_data(as_text=True)
    assert f'<button type="button" data-retry="{job_id}">Retry</button>' in html
    answer = client.post(f"/jobs/{job_id}/retry", json={}, headers={"Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 202 and answer.get_json()["trigger"] == "retry"
    drive(redis)
    html = client.get(f"/jobs/{job_id}", headers=HTML).get_data(as_text=True)
    kinds = re.findall(r'<tr class="event ev-(\w+)">', html)
    # The failed run keeps its place: started, its trigger (403), failed; then the retry and the new run.
    assert kinds == ["queued", "started", "trigger", "failed", "retry", "started", "trigger", "poll", "poll",
                     "completed"], kinds
    assert "data-retry" not in html


def test_a_stuck_job_shows_it_and_retry_runs_it_again(client: FlaskClient, redis: Redis) -> None:
    job_id = push(client, "stuck-1").get_json()["jobs"][0]["id"]
    Job.fetch(job_id, connection=redis).delete()  # as rq-dashboard's "delete" would
    html = client.get(f"/jobs/{job_id}", headers=HTML).get_data(as_text=True)
    assert "Stuck:" in html and f'data-retry="{job_id}"' in html
    answer = client.post(f"/jobs/{job_id}/retry", json={})
    assert answer.status_code == 202 and answer.get_json()["status"] == "queued"
    drive(redis)
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "completed" and record["trigger"] == "retry"
    again = client.post(f"/jobs/{job_id}/retry", json={})
    assert again.status_code == 409 and "only a failed job (or a stuck one)" in again.get_json()["error"]


def test_every_page_has_the_favicon_and_the_pages_json_twins(client: FlaskClient) -> None:
    push(client, "fav-1")
    for url in ("/", "/deliveries", "/deliveries/fav-1"):
        html = client.get(url, headers=HTML).get_data(as_text=True)
        assert '<link rel="icon" href="/static/favicon.svg"' in html, url
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert json.loads(client.get("/deliveries/fav-1").get_data())["jobs"][0]["delivery"] == "fav-1"


def test_secrets_never_reach_the_pages(client: FlaskClient, redis: Redis, sandbox: Any) -> None:
    redact.register(TOKEN)  # as the app registers the config's secrets in a real process
    faults(sandbox, "mesa", {"status": 403, "message": "denied, you sent {request}"})
    job_id = push(client, "secret-1").get_json()["jobs"][0]["id"]
    drive(redis)
    for url in (f"/jobs/{job_id}", "/", "/deliveries", "/deliveries/secret-1"):
        for headers in (HTML, {}):
            shown = client.get(url, headers=headers).get_data(as_text=True)
            assert TOKEN not in shown and SECRET not in shown, url


def test_the_edge_logs_every_delivery_within_a_second_or_two_off_its_request_path(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, sandbox: Any) -> None:
    """``syncbridge web``'s event-loop edge notes each delivery in memory and writes the log ten times
    a second (the counts for /metrics once a second); what it wrote is what the Flask view writes at once."""
    config = tmp_path / "syncbridge.yml"
    config.write_text(config_text(sandbox).replace("\n        ", "\n"))
    with web_process(config, redis_server.url, tmp_path / "web.log", SYNCBRIDGE_MAX_BODY_BYTES="4096") as (url, _):
        body = push_body(after="e" * 40)
        post = lambda path, headers, data=body: requests.post(f"{url}{path}", data=data, headers=headers,  # noqa: E731
                                                              timeout=5)
        accepted = post("/hooks/github", github_headers(body, delivery="edge-1")).json()
        assert post("/hooks/github", github_headers(body, delivery="edge-2", secret="wrong-secret-0123")).status_code \
            == 401
        assert post("/hooks/github", github_headers(b"x" * 5000, delivery="edge-3"), b"x" * 5000).status_code == 413
        assert post("/hooks/gihub", github_headers(body, delivery="edge-4")).status_code == 404
        logged = until(lambda: (d := requests.get(f"{url}/deliveries", timeout=5).json()["deliveries"])
                       and len(d) == 4 and d, 10, what="four deliveries in the log")
        verdicts = {entry["delivery"]: (entry["status"], entry["verdict"]) for entry in logged}
        assert verdicts == {"edge-1": (202, "accepted: 1 job queued"),
                            "edge-2": (401, "received, signature did not match"),
                            "edge-3": (413, "refused: the body is over the size limit"),
                            "edge-4": (404, "unknown source: the config has no source of this name")}
        job_id = accepted["jobs"][0]["id"]
        page = requests.get(f"{url}/jobs/{job_id}", headers=HTML, timeout=5).text
        assert "edge-1" in page.split("Deliveries that fed it")[1]
        counted = 'syncbridge_webhooks_received_total{outcome="unauthorized",source="github"} 1.0'
        until(lambda: counted in requests.get(f"{url}/metrics", timeout=5).text, 10, what="the 401 counted")
