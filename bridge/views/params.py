"""Query parameters several routes share, checked the same way everywhere: a value the route cannot
use is a 400 that says what it takes (never silently ignored), an empty one means "not given" (what
an HTML form sends for a blank field) but for numbers, which no form of ours leaves blank."""

from __future__ import annotations

from flask import abort, request

from bridge.config import JOB_STATES


def one(name: str, empty: str | None = None) -> str | None:
    """``?<name>=`` given once (a repeated parameter is a 400, not a silent pick), or None when not
    given; ``empty`` is what an empty value means (None: not given)."""
    values = request.args.getlist(name)
    if len(values) > 1:
        abort(400, description=f"give {name} once")
    return (values[0] or empty) if values else None


def status() -> str | None:
    """``?status=``: a job status, or None."""
    value = one("status")
    if value is not None and value not in JOB_STATES:
        abort(400, description=f"status must be one of {', '.join(JOB_STATES)}")
    return value


def whole_number(name: str, default: int, minimum: int | None = None) -> int:
    """``?<name>=``: a whole number (at least ``minimum``), or ``default`` when not given (empty is not a number)."""
    value = one(name, empty="")
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    if minimum is not None and number < minimum:
        abort(400, description=f"{name} must be at least {minimum}")
    return number
