"""Human durations (``30s``, ``10m``, ``6h``, ``7d``) as seconds, for config and CLI alike."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``; a bare number is seconds. Raises ValueError on anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):  # YAML may give null, a list, a date
        raise ValueError("a duration is a number of seconds or a string like 30s, 10m, 6h, 7d")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float: refused below as not finite
            seconds = math.inf
    else:
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like 30s, 10m, 6h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 < seconds < math.inf:  # also refuses NaN (YAML's .nan), which compares false to everything
        raise ValueError("a duration must be positive and finite")
    return seconds


def parse_duration_or_zero(value: str | int | float) -> float:
    """Like :func:`parse_duration`, but ``0`` (off) is allowed."""
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)
