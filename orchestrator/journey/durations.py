"""Durations in journey files: ``30s``, ``15m``, ``24h``, ``7d``, ``2w``, ``3mo``, ``1h30m``.

Units (case-sensitive):

====  =======================================
s     seconds
m     minutes
h     hours
d     days (24 h)
w     weeks (7 d)
mo    months, counted as 30 days (also ``M``)
====  =======================================

A duration is one or more ``<whole number><unit>`` parts, largest first or in any
order (``1d12h`` = 36 hours). It must be greater than zero. Months are a fixed 30
days so that a duration is always the same length whatever the calendar says.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "mo": timedelta(days=30),
    "M": timedelta(days=30),
}
_PART = re.compile(r"(\d+)\s*(mo|M|s|m|h|d|w)")
_WHOLE = re.compile(r"^\s*(?:\d+\s*(?:mo|M|s|m|h|d|w)\s*)+$")
PATTERN = r"^\s*([0-9]+\s*(mo|M|s|m|h|d|w)\s*)+$"
HELP = "use a whole number followed by a unit: s, m, h, d, w or mo (30 days), e.g. 30s, 15m, 24h, 7d, 2w, 3mo, 1h30m"


class DurationError(ValueError):
    """A duration string that cannot be read."""


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse a journey duration such as ``24h`` into a :class:`~datetime.timedelta`.

    A bare number is read as seconds. Raises :class:`DurationError` with a message
    saying what is accepted.
    """
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, bool):
        raise DurationError(f"bad duration {text!r}: {HELP}")
    elif isinstance(text, (int, float)):
        value = timedelta(seconds=text)
    elif isinstance(text, str) and _WHOLE.match(text):
        value = timedelta(0)
        for number, unit in _PART.findall(text):
            value += int(number) * UNITS[unit]
    else:
        raise DurationError(f"bad duration {text!r}: {HELP}")
    if value <= timedelta(0):
        raise DurationError(f"bad duration {text!r}: must be greater than zero")
    return value


def format_duration(value: timedelta) -> str:
    """Format a timedelta the way a designer would write it (``1d12h``, ``30s``)."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            n, total = divmod(total, size)
            out.append(f"{n}{unit}")
    return "".join(out)


def _validate(value: object) -> timedelta:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except DurationError as exc:
        raise PydanticCustomError("bad_duration", str(exc)) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PATTERN,
            "description": "A duration: whole number + unit (s, m, h, d, w, mo = 30 days), e.g. 30s, 24h, 7d, 3mo, 1h30m",
            "examples": ["30s", "15m", "24h", "7d", "2w", "3mo"],
        }
    ),
]
"""A pydantic field type for durations in journey files."""
