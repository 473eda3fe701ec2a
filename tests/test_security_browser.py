"""Cross-site forgery and the page's policy, in a real browser (Debian's headless Chromium).

A page on another site auto-submits a ``text/plain`` form (the classic forgery: a browser sends
it without asking anyone) to ``POST /jobs/<id>/retry`` while the browser holds what opens the
bridge: Basic credentials it was given earlier, or, in protected mode, simply being on this
machine. The job must stay failed. Then the dashboard's own Retry button, in the same browser,
retries it: the refusal is about who made the request, not about the browser.
"""

from __future__ import annotations

import threading
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
from tests.browser import CHROMIUM, Chromium
from tests.conftest import SECRET, mesa_config
from tests.driver import drive

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
TOKEN = "browser-api-token-0123456789"


def serve(app: Flask) -> tuple[str, Callable[[], None]]:
    """``app`` on a free port of 127.0.0.1, served by werkzeug in a thread: its port and a stop."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return str(server.server_port), server.shutdown


def attacker(target: str) -> Flask:
    """Another site: its page posts a form to ``target`` as soon as it loads (no user action)."""
    app = Flask("attacker")

    @app.get("/")
    def page() -> str:
        # text/plain lets a form send a body that looks like JSON: {"retry": "=", "x": "y"}
        return (f'<form id="f" method="POST" enctype="text/plain" action="{target}">'
                '<input name=\'{"retry": "\' value=\'", "x": "y"}\'></form>'
                '<script>document.getElementById("f").submit()</script>')

    return app


@pytest.fixture(params=["basic-credentials", "protected-mode"])
def failed_job(request: pytest.FixtureRequest, write_config: Callable[[str], Config], redis: Redis, sandbox: Any,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """A bridge (with an API token, or in protected mode) holding one failed job.

    Yields the dashboard's URL as the browser should first open it, the bridge's own URL and the job id.
    """
    if request.param == "basic-credentials":
        monkeypatch.setenv("SYNCBRIDGE_API_TOKEN", TOKEN)
    app = create_app(write_config(mesa_config(sandbox.url)), redis)
    requests.post(f"{sandbox.url}/_sandbox/faults/mesa", json={"responses": [{"status": 403}]},
                  timeout=5).raise_for_status()
    headers, body = signed_push("github", "acme/widgets", "refs/heads/main", "0" * 40, "f" * 40, SECRET.encode())
    job_id = app.test_client().post("/hooks/github", data=body, headers=headers).get_json()["jobs"][0]["id"]
    drive(redis)
    port, stop = serve(app)
    bridge = f"http://127.0.0.1:{port}/"
    first = f"http://ops:{TOKEN}@127.0.0.1:{port}/" if request.param == "basic-credentials" else bridge
    yield first, bridge, job_id
    stop()


def test_a_cross_site_form_cannot_retry_but_the_dashboard_button_can(
        failed_job: tuple[str, str, str], redis: Redis, tmp_path: Path) -> None:
    first, bridge, job_id = failed_job
    store = Store(redis, 3600)
    assert store.get(job_id)["status"] == "failed"
    evil_port, stop_evil = serve(attacker(f"{bridge}jobs/{job_id}/retry"))
    try:
        with Chromium(tmp_path / "profile") as browser:
            tab = browser.tab()
            tab.navigate(first)  # the browser now holds the credentials (or is simply local)
            tab.wait_for(f"!!document.querySelector('button[data-retry=\"{job_id}\"]')")

            # localhost and 127.0.0.1 are different sites: this is a page from elsewhere.
            tab.navigate(f"http://localhost:{evil_port}/")
            answer = tab.wait_for(f"location.href.startsWith('{bridge}jobs/') && document.body.innerText")
            assert "same-origin JSON request" in answer, answer
            assert store.get(job_id)["status"] == "failed" and store.get(job_id)["attempts"] == 1

            tab.navigate(bridge)
            tab.wait_for(f"!!document.querySelector('button[data-retry=\"{job_id}\"]')")
            tab.evaluate(f"document.querySelector('button[data-retry=\"{job_id}\"]').click()")
            tab.wait_for(f"!document.querySelector('button[data-retry=\"{job_id}\"]')")
    finally:
        stop_evil()
    record = store.get(job_id)
    assert record["status"] == "queued" and record["trigger"] == "retry"


def test_the_dashboard_runs_its_own_script_and_no_injected_one(failed_job: tuple[str, str, str],
                                                               tmp_path: Path) -> None:
    first, _, job_id = failed_job
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.tab()
        tab.navigate(first)
        # The script (a static file) ran: it fetched dashboard.json and said when.
        assert tab.wait_for("document.getElementById('updated').textContent").startswith("updated ")
        # Markup that reached the page (as an error message might) cannot run script of its own.
        injected = tab.evaluate("""new Promise((done) => {
            window.injectedRan = false;
            const script = document.createElement('script');
            script.textContent = 'window.injectedRan = true';
            document.body.append(script);
            const img = document.createElement('img');
            img.setAttribute('onerror', 'window.injectedRan = true');
            img.src = 'data:,broken';
            document.body.append(img);
            setTimeout(() => done(window.injectedRan), 500);
        })""")
        assert injected is False
        assert tab.evaluate(f"document.querySelector('tr[data-id=\"{job_id}\"] .state').textContent") == "failed"
