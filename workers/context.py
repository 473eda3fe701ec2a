"""Per-process state of a worker: the config, one HTTP session per target.

Built once per worker process (RQ's SimpleWorker runs jobs in-process), so sessions keep their
connections alive and token caches survive between jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from bridge import config as config_module
from bridge import redact
from bridge.config import Config
from workers.providers.base import Http


@dataclass
class Context:
    config: Config
    sessions: dict[str, Http] = field(default_factory=dict)

    def http(self, target_name: str) -> Http:
        """The HTTP layer for a target, created on first use."""
        if target_name not in self.sessions:
            target = self.config.targets[target_name]
            self.sessions[target_name] = Http(target, target.provider)
        return self.sessions[target_name]


@cache
def context() -> Context:
    """The worker's context, from ``SYNCBRIDGE_CONFIG`` (loaded once per process).

    The config's secrets are registered with the process's scrubber here, before any job runs.
    """
    config = config_module.load()
    redact.register(*config.secret_values())
    return Context(config=config)
