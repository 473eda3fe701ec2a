"""``syncbridge sandbox``: local stand-ins of every provider's sync API."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8001, show_default=True, help="port to listen on")
def sandbox(host: str, port: int) -> None:
    """Serve the provider sandbox (Mesa, Google CSR, Bitbucket DC, Azure, CodeArts, GitLab, Gitea)."""
    from sandbox.server import main

    main(host, port)
