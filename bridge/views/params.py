"""Query parameters several routes share, checked the same way everywhere: a value the route cannot
use is a 400 that says what it takes (never silently ignored), an empty one means "not given" (what
an HTML form sends for a blank field)."""

from __future__ import annotations

from flask import abort, request

from bridge.config import JOB_STATES


def status() -> str | None:
    """``?status=``: a job status, or None."""
    value = request.args.get("status") or None
    if value is not None and value not in JOB_STATES:
        abort(400, description=f"status must be one of {', '.join(JOB_STATES)}")
    return value


def whole_number(name: str, default: int, minimum: int | None = None) -> int:
    """``?<name>=``: a whole number (at least ``minimum``), or ``default`` when not given."""
    value = request.args.get(name) or None
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    if minimum is not None and number < minimum:
        abort(400, description=f"{name} must be at least {minimum}")
    return number
