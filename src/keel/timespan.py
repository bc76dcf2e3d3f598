"""Time spans people type: '7d', '24h', '30m' or an ISO date, as a UNIX timestamp."""

from __future__ import annotations

import datetime as dt
import re
import time

from keel.errors import UserError

_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None) -> float | None:
    """'7d', '24h', '30m' or an ISO date → a UNIX timestamp."""
    if not value:
        return None
    match = _SPAN.match(value.strip())
    if match:
        return time.time() - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UserError(f"--since takes a span like 7d, 24h, 30m or an ISO date, not '{value}'") from None


def parse_span(value: str, what: str = "a span") -> float:
    """'7d', '24h', '30m', '90s' or '2w' → seconds; a UserError otherwise."""
    match = _SPAN.match(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise UserError(f"{what} takes a span like 1d, 24h, 30m or 2w, not '{value}'")
    return float(int(match.group(1)) * _UNITS[match.group(2)])
