"""HTTP routes, one blueprint per concern: reading jobs, health, the dashboard, metrics (hooks: bridge.receiver)."""
