"""``syncbridge retry ID``: re-run a failed job through ``POST /jobs/<id>/retry``."""

from __future__ import annotations

import json

import click

from bridge.commands import json_option
from bridge.commands.jobs import bridge_url_option, call, refusal


@click.command()
@click.argument("job_id")
@json_option
@bridge_url_option
def retry(job_id: str, as_json: bool, url: str) -> None:
    """Re-run a failed (or stuck) job. Sends SYNCBRIDGE_API_TOKEN from the environment when it is set."""
    base = url.rstrip("/")
    # A JSON body: without a token, the bridge takes a retry from this machine in that form only.
    response = call("POST", f"{base}/jobs/{job_id}/retry", json={})
    if response.status_code != 202:
        raise click.ClickException(f"cannot retry job {job_id}: {refusal(response)}")
    job = response.json()
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(f"job {job_id} ({job['target']}) is {job['status']} again; follow it with `syncbridge jobs {job_id}`"
               f" or {base}/jobs/{job_id}")
