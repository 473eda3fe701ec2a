"""One module per ``syncbridge`` subcommand of the web side (worker ones live in ``workers``)."""
