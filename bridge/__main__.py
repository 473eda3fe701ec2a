"""``python -m bridge`` is the ``syncbridge`` command (used by ``syncbridge run`` for its children)."""

from bridge.cli import main

main()
