"""The ``syncbridge`` command.

Subcommands are loaded by dotted name when invoked (click's lazy group), so the web process
never imports ``workers`` and ``syncbridge web --help`` stays fast. Every subcommand takes
``--config FILE`` (added here, once for all) and ``-h``. Shell completion is click's own:
``eval "$(_SYNCBRIDGE_COMPLETE=bash_source syncbridge)"`` (README, "Shell completion").
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

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
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _use_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config FILE``: this command, and every process it starts, reads that file.

    An explicit file wins over ``SYNCBRIDGE_CONFIG_YAML`` in the environment (naming both there
    is an error; naming one here is a choice).
    """
    from bridge.config import CONFIG_YAML_VAR

    if value is not None:
        os.environ["SYNCBRIDGE_CONFIG"] = str(Path(value).resolve())
        os.environ.pop(CONFIG_YAML_VAR, None)


def config_option() -> click.Option:
    return click.Option(["--config"], type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                        expose_value=False, is_eager=True, callback=_use_config,
                        help="the YAML config (default: $SYNCBRIDGE_CONFIG, else ./syncbridge.yml)")


class LazyGroup(click.Group):
    """A group whose commands are imported only when used, each given ``--config``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        if not any(param.name == "config" for param in command.params):
            command.params.append(config_option())
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(package_name="syncbridge", message="%(prog)s %(version)s")
def main() -> None:
    """syncbridge: signed Git pushes in, followed mirror syncs out."""
