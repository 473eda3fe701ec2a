"""``syncbridge retry ID``: re-run a failed job through ``POST /jobs/<id>/retry``."""

from __future__ import annotations

import json

import click
import requests

from bridge.commands.jobs import api_headers, bridge_url_option


@click.command()
@click.argument("job_id")
@bridge_url_option
def retry(job_id: str, url: str) -> None:
    """Re-run a failed job (SYNCBRIDGE_API_TOKEN from the environment, unless the bridge runs without one)."""
    try:  # a JSON body: without a token, the bridge takes a retry from this machine in that form only
        response = requests.post(f"{url.rstrip('/')}/jobs/{job_id}/retry", json={}, headers=api_headers(), timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if response.status_code != 202:
        raise click.ClickException(f"{response.status_code}: {response.json().get('error', response.text)}")
    click.echo(json.dumps(response.json(), indent=2))
