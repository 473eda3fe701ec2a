"""``syncbridge jobs [ID]``: the status routes from a terminal."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import click
import requests


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


@click.command()
@click.argument("job_id", required=False)
@click.option("--status", type=click.Choice(["queued", "in_progress", "completed", "failed"]))
@click.option("--target")
@click.option("--limit", type=int, default=20, show_default=True)
@bridge_url_option
def jobs(job_id: str | None, status: str | None, target: str | None, limit: int, url: str) -> None:
    """Show one job, or the newest jobs (filtered)."""
    headers = api_headers()
    base = url.rstrip("/")
    try:
        if job_id:
            response = requests.get(f"{base}/jobs/{job_id}", headers=headers, timeout=10)
        else:
            params = {"status": status, "target": target, "limit": limit}
            response = requests.get(f"{base}/jobs", params=params, headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {base}: {exc}") from None
    if response.status_code != 200:
        raise click.ClickException(f"{response.status_code}: {response.text.strip()}")
    data = response.json()
    if job_id:
        click.echo(json.dumps(data, indent=2))
        return
    for job in data["jobs"]:
        click.echo(f"{job['created_at']}  {job['status']:<11} {job['target']:<20} {job['repo']}@{job['ref']} "
                   f"{(job['after'] or '')[:7]}  {job['id']}" + (f"  error: {job['error']}" if job["error"] else ""))
