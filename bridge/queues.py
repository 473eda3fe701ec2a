"""The names of syncbridge's RQ queues, in a module of their own.

A worker's supervising process needs these names and nothing else of the bridge: importing
``bridge.queueing`` would load the config's libraries into it, and into every process it forks
(docs/RELIABILITY.md, "Worker memory").
"""

QUEUE_NAME = "syncbridge"
NOTIFY_QUEUE_NAME = "syncbridge-notify"  # its own queue: a slow chat service never delays a sync
