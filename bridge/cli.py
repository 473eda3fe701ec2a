"""The ``syncbridge`` command.

Subcommands are loaded by dotted name when invoked (click's lazy group), so the web process
never imports ``workers`` and ``syncbridge web --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

COMMANDS = {
    "run": "bridge.commands.run:run",
    "web": "bridge.commands.web:web",
    "worker": "workers.commands:worker",
    "check": "workers.commands:check",
    "send-test": "bridge.commands.send_test:send_test",
    "jobs": "bridge.commands.jobs:jobs",
    "retry": "bridge.commands.retry:retry",
    "sandbox": "bridge.commands.sandbox:sandbox",
    "sweep": "workers.commands:sweep",
}


class LazyGroup(click.Group):
    """A group whose commands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup)
@click.version_option(package_name="syncbridge")
def main() -> None:
    """syncbridge: signed Git pushes in, followed mirror syncs out."""
