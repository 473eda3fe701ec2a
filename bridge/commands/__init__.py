"""One module per ``syncbridge`` subcommand of the web side (worker ones live in ``workers``).

Options every side shares live here, in a module that imports nothing but click: the worker's
supervising process imports them and must stay small.
"""

import click

json_option = click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts) instead of text")
