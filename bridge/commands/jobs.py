"""``syncbridge jobs [ID]``: the status routes from a terminal (and what ``retry`` and ``send-test`` share)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import click
import requests

from bridge.commands import json_option
from bridge.config import JOB_STATES


def api_headers() -> dict[str, str]:
    """The Authorization header from SYNCBRIDGE_API_TOKEN, when it is set."""
    token = os.environ.get("SYNCBRIDGE_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A URL requests can use: without a scheme it would fail with "No connection adapters"."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s) URL: write it with its scheme,"
                                 f" e.g. http://{value.split('://')[-1]}")
    return value


bridge_url_option = click.option(
    "--url", default=lambda: f"http://127.0.0.1:{os.environ.get('PORT', 8000)}", callback=_http_url,
    show_default="http://127.0.0.1:$PORT", help="the running bridge")


def call(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request to the bridge; not reaching it is said in words."""
    try:
        return requests.request(method, url, headers=api_headers(), timeout=10, **kwargs)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None


def answer_json(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one (a proxy's HTML error page)."""
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def refusal(response: requests.Response) -> str:
    """Why the bridge said no, in its words (its JSON ``error``), else the first line of what it said."""
    error = answer_json(response).get("error")
    if not error:
        text = response.text.strip()
        error = text.splitlines()[0][:200] if text else response.reason or "no reason given"
    if response.status_code == 401:
        given = "is not the bridge's" if api_headers() else "is not set in this shell"
        error += f" (SYNCBRIDGE_API_TOKEN {given})"
    return f"{error} ({response.status_code})"


@click.command()
@click.argument("job_id", required=False)
@click.option("--status", type=click.Choice(JOB_STATES), help="only jobs in this state")
@click.option("--target", help="only this target's jobs (its exact name)")
@click.option("--repo", help="only this repository's jobs (its exact full name, e.g. acme/widgets)")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="how many jobs at most")
@json_option
@bridge_url_option
def jobs(job_id: str | None, status: str | None, target: str | None, repo: str | None, limit: int, as_json: bool,
         url: str) -> None:
    """Show one job, or the newest jobs (filtered)."""
    base = url.rstrip("/")
    if job_id:
        response = call("GET", f"{base}/jobs/{job_id}")
    else:
        response = call("GET", f"{base}/jobs", params={"status": status, "target": target, "repo": repo,
                                                       "limit": limit})
    if response.status_code != 200:
        raise click.ClickException(refusal(response))
    data = response.json()
    if job_id or as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for job in data["jobs"]:
        click.echo(f"{job['created_at']}  {job['status']:<11} {job['target']:<20} {job['repo']}@{job['ref']} "
                   f"{(job['after'] or '')[:7]}  {job['id']}" + (f"  error: {job['error']}" if job["error"] else ""))
