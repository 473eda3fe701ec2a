"""syncbridge's doing side: RQ entry points, one module per provider, notifications.

``workers`` imports ``bridge`` (config, the job store); never the other way round.
"""
