"""syncbridge's web side and shared model: config, the job store, hosts, routing, queueing.

This package never imports ``workers``: the web process stays small and enqueues jobs by their
dotted name, so a worker-only dependency can never slow down or break webhook receipt.
"""

# The one place the version is written: pyproject.toml reads it, and so do --version and the User-Agent.
__version__ = "0.1.0"
