"""The console in a real browser (Debian's headless Chromium, over the DevTools protocol).

Opened as an operator with a token opens it: ``http://ops:TOKEN@host/``. The pages must keep
refreshing (fetch refuses URLs with credentials in them), keep their filters in the URL through
refreshes and reloads, read without JavaScript, and retry a failed job from its own page.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from redis import Redis
from werkzeug.serving import make_server

from bridge.app import create_app
from bridge.config import Config
from bridge.samples import signed_push
from bridge.store import Store
from tests.browser import CHROMIUM, Chromium, Tab
from tests.conftest import SECRET, mesa_config
from tests.driver import drive

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
TOKEN = "console-browser-token-0123456789"


def serve(app: Flask) -> tuple[int, Callable[[], None]]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_port, server.shutdown


def push(base: str, delivery: str, after: str, secret: str = SECRET) -> requests.Response:
    headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, after, secret.encode())
    return requests.post(f"{base}/hooks/github", data=body, headers={**headers, "X-GitHub-Delivery": delivery},
                         timeout=10)


@pytest.fixture
def console(write_config: Callable[[str], Config], redis: Redis, sandbox: Any,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:
    """A bridge with a token, holding a completed job, a failed one and a refused delivery.

    Yields the URL with credentials (as an operator types it) and the jobs by outcome.
    """
    monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", TOKEN)
    port, stop = serve(create_app(write_config(mesa_config(sandbox.url)), redis))
    base = f"http://127.0.0.1:{port}"
    completed = push(base, "ui-ok", "a" * 40).json()["jobs"][0]["id"]
    drive(redis)
    requests.post(f"{sandbox.url}/_sandbox/faults/mesa", json={"responses": [{"status": 403}]},
                  timeout=5).raise_for_status()
    failed = push(base, "ui-failed", "b" * 40).json()["jobs"][0]["id"]
    drive(redis)
    assert push(base, "ui-forged", "c" * 40, secret="not-the-hosts-secret").status_code == 401
    yield f"http://ops:{TOKEN}@127.0.0.1:{port}/", {"completed": completed, "failed": failed}
    stop()


def refreshes(tab: Tab, times: int = 2) -> None:
    """Wait until the page's script has refreshed it ``times`` more times, each without an error."""
    for _ in range(times):
        before = tab.evaluate("document.getElementById('updated').textContent")
        tab.wait_for(f"document.getElementById('updated').textContent !== {before!r}", timeout=15)
        said = tab.evaluate("document.getElementById('updated').textContent")
        assert said.startswith("updated "), said  # not "cannot refresh (...)"
        time.sleep(1.1)  # the clock in "updated hh:mm:ss" moves on before the next one


def screenshot(tab: Tab, path: Path) -> None:
    tab.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    path.write_bytes(base64.b64decode(tab.send("Page.captureScreenshot", format="png")["data"]))
    assert path.stat().st_size > 10_000


def test_the_dashboard_keeps_refreshing_when_opened_with_the_token_in_the_url(
        console: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    with_credentials, jobs = console
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.tab()
        tab.navigate(with_credentials)
        # The page's base URL keeps them, so a fetch of a relative URL is refused ("Request cannot be
        # constructed from a URL that includes credentials"): the script must build its own.
        assert tab.evaluate("document.baseURI").startswith("http://ops:")
        tab.wait_for(f"!!document.querySelector('tr[data-id=\"{jobs['failed']}\"]')")
        refreshes(tab, 3)
        # Every row links to its job's page; the failing target's card says so.
        assert tab.evaluate(f"document.querySelector('tr[data-id=\"{jobs['completed']}\"] a').getAttribute('href')") \
            == f"/jobs/{jobs['completed']}"
        assert tab.evaluate("document.querySelector('.target').classList.contains('failing')") is True
        assert "last failure" in tab.evaluate("document.querySelector('.target').innerText")
        assert tab.evaluate("document.querySelector('link[rel=icon]').href").endswith("/static/favicon.svg")
        screenshot(tab, tmp_path / "dashboard.png")


def test_filters_live_in_the_url_and_survive_refreshes_and_reloads(console: tuple[str, dict[str, str]],
                                                                   tmp_path: Path) -> None:
    with_credentials, jobs = console
    rows = "[...document.querySelectorAll('#jobs tr[data-id]')].map((row) => row.dataset.id)"
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.tab()
        tab.navigate(with_credentials + "?status=failed")
        refreshes(tab, 2)  # the refreshes keep the filter (they used to reset it after 2 s)
        assert tab.evaluate(rows) == [jobs["failed"]]
        assert tab.evaluate("document.querySelector('select[name=status]').value") == "failed"
        assert tab.evaluate("location.search") == "?status=failed"
        # Typing a filter puts it in the URL and filters the list; any part of the name matches.
        tab.evaluate("""(() => { const field = document.querySelector('input[name=target]');
                                 field.value = 'MESA';
                                 field.dispatchEvent(new Event('input', {bubbles: true})); })()""")
        tab.wait_for("location.search === '?status=failed&target=MESA'")
        refreshes(tab, 1)
        assert tab.evaluate(rows) == [jobs["failed"]]
        tab.evaluate("document.querySelector('select[name=status]').value = 'completed'; "
                     "document.querySelector('select[name=status]').dispatchEvent(new Event('input', {bubbles: true}))")
        tab.wait_for(f"JSON.stringify({rows}) === JSON.stringify([{jobs['completed']!r}])")
        tab.send("Page.reload")
        tab.wait_for("document.readyState === 'complete' && location.search === '?status=completed&target=MESA'")
        tab.wait_for("document.querySelector('input[name=target]').value === 'MESA'")
        assert tab.evaluate(rows) == [jobs["completed"]]


def test_a_failed_job_is_retried_from_its_page_which_follows_it_to_the_end(
        console: tuple[str, dict[str, str]], redis: Redis, tmp_path: Path) -> None:
    with_credentials, jobs = console
    failed = jobs["failed"]
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.tab()
        tab.navigate(with_credentials)
        tab.wait_for(f"!!document.querySelector('tr[data-id=\"{failed}\"] a')")
        tab.evaluate(f"document.querySelector('tr[data-id=\"{failed}\"] a').click()")  # the row's link
        tab.wait_for(f"location.pathname === '/jobs/{failed}' && document.readyState === 'complete'")
        page = tab.evaluate("document.body.innerText")
        assert "Timeline" in page and "trigger" in page and "403" in page and "ui-failed" in page
        screenshot(tab, tmp_path / "job-failed.png")
        tab.evaluate(f"document.querySelector('button[data-retry=\"{failed}\"]').click()")
        tab.wait_for("document.querySelector('#job').dataset.status === 'queued'")
        record = Store(redis, 3600).get(failed)
        assert record["status"] == "queued" and record["trigger"] == "retry"
        drive(redis)  # a worker runs it; the page, refreshing itself, follows it to its end
        tab.wait_for("document.querySelector('#job').dataset.status === 'completed'", timeout=20)
        assert not tab.evaluate("document.body.dataset.refresh")  # an ended job's page stops refreshing
        kinds = tab.evaluate("[...document.querySelectorAll('.timeline tr')].map((row) => row.className)")
        assert "event ev-retry" in kinds and kinds[-1] == "event ev-completed"
        assert tab.evaluate("document.querySelector('button[data-retry]')") is None
        screenshot(tab, tmp_path / "job-retried.png")


def test_pages_read_without_javascript_and_the_delivery_log_shows_a_wrong_secret(
        console: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    with_credentials, jobs = console
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.tab()
        tab.send("Emulation.setScriptExecutionDisabled", value=True)
        tab.navigate(with_credentials + f"jobs/{jobs['failed']}")
        page = tab.evaluate("document.body.innerText")  # (DevTools still evaluates; the page's script did not run)
        assert "widgets-mesa failed" in page and "Timeline" in page and "Deliveries that fed it" in page
        assert "ui-failed" in page and tab.evaluate("document.getElementById('updated').textContent") == ""
        tab.send("Emulation.setScriptExecutionDisabled", value=False)
        tab.navigate(with_credentials + "deliveries")
        tab.wait_for("document.body.innerText.includes('received, signature did not match')")
        refreshes(tab, 1)
        screenshot(tab, tmp_path / "deliveries.png")
