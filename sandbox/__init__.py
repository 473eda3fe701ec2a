"""Stand-ins for the sync APIs of every provider syncbridge talks to, over real HTTP.

A separate Flask app (it imports nothing from ``bridge`` or ``workers``) used by the demo
(``syncbridge sandbox``, ``syncbridge run``) and by the test suite. Each provider lives under
its own prefix and follows its contract in ``CONTRACTS.md``: paths, auth, status words, error
shapes. ``sandbox.app.create_app`` builds it; ``sandbox.server.SandboxServer`` serves it.
"""
