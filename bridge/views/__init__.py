"""HTTP routes, one blueprint per concern: receiving hooks, reading jobs, health."""
