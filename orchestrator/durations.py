"""Durations, as designers write them in journey files and in ``pressure.yaml``.

Examples: ``30s``, ``15m``, ``24h``, ``7d``, ``2w``, ``3mo``, ``1h30m``.

Units (case-sensitive):

====  =======================================
s     seconds
m     minutes
h     hours
d     days (24 h)
w     weeks (7 d)
mo    months, counted as 30 days (also ``M``)
====  =======================================

A duration is one or more ``<whole number><unit>`` parts, in any order, spaces
between them allowed (``1d12h`` = ``1d 12h`` = 36 hours). A bare whole number
(YAML ``90``, not the string ``"90"``) counts seconds. Fractions (``1.5h``) and
negative values are refused.

Most settings need a duration longer than zero (a wait timeout, a delay, the
arbitration window). The few where zero means "none" accept ``0s`` (in
``pressure.yaml``: the calamity ``lock`` and ``key_margin``); the JSON schemas and
the error messages say which.

Months are a fixed 30 days so that a duration is always the same length whatever
the calendar says. :func:`format_duration` writes weeks, days, hours, minutes and
seconds (never ``mo``): ``30d`` comes back as ``4w2d``, which reads back to the
same length.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = [
    "EXAMPLES",
    "HELP",
    "PATTERN",
    "UNITS",
    "Duration",
    "DurationError",
    "DurationOrZero",
    "format_duration",
    "parse_duration",
]

UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "mo": timedelta(days=30),
    "M": timedelta(days=30),
}
_UNIT = "mo|M|s|m|h|d|w"  # "mo" before "m": the longest unit wins
PATTERN = rf"^\s*([0-9]+\s*({_UNIT})\s*)+$"
"""The one regular expression of a written duration (also the JSON Schema ``pattern``)."""
_WHOLE = re.compile(PATTERN)
_PART = re.compile(rf"([0-9]+)\s*({_UNIT})")
EXAMPLES = ("30s", "15m", "24h", "7d", "2w", "3mo", "1h30m")
HELP = (
    "use a whole number followed by a unit: s, m, h, d, w or mo (30 days), e.g. "
    + ", ".join(EXAMPLES)
    + " (a bare whole number counts seconds)"
)
"""What is accepted, in words (the end of every error message)."""
_FORMAT_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class DurationError(ValueError):
    """A duration that cannot be read, or that is too short; the message says what is accepted."""


def parse_duration(value: object, *, allow_zero: bool = False) -> timedelta:
    """Read a duration: a string such as ``"24h"``, a whole number of seconds, or a timedelta.

    Zero is refused unless ``allow_zero``; negative values always are. Raises
    :class:`DurationError` with a message saying what is accepted.
    """
    length = _read(value)
    if length < timedelta(0):
        raise DurationError(f"bad duration {value!r}: must not be negative; {HELP}")
    if length == timedelta(0) and not allow_zero:
        raise DurationError(f"bad duration {value!r}: must be longer than 0s; {HELP}")
    return length


def _read(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and _WHOLE.match(value):
        return sum((int(number) * UNITS[unit] for number, unit in _PART.findall(value)), timedelta(0))
    raise DurationError(f"bad duration {value!r}: {HELP}")


def format_duration(value: timedelta) -> str:
    """The duration the way a designer writes it (``1d12h``, ``30s``; zero or less: ``0s``).

    Whole seconds only; :func:`parse_duration` reads the result back to the same length.
    """
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in _FORMAT_UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _validator(allow_zero: bool) -> Callable[[object], timedelta]:
    def validate(value: object) -> timedelta:
        try:
            return parse_duration(value, allow_zero=allow_zero)
        except DurationError as exc:
            raise PydanticCustomError("bad_duration", "{reason}", {"reason": str(exc)}) from None

    return validate


def _json_schema(minimum: int, words: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "pattern": PATTERN, "examples": list(EXAMPLES)},
            {"type": "integer", "minimum": minimum, "description": "seconds"},
        ],
        "description": f"A duration {words}: whole number + unit (s, m, h, d, w, mo = 30 days), e.g. 30s, 24h, 7d, 3mo, 1h30m; "
        "or a whole number of seconds.",
    }


_SERIALIZER = PlainSerializer(format_duration, return_type=str, when_used="json")

Duration = Annotated[
    timedelta,
    BeforeValidator(_validator(allow_zero=False)),
    _SERIALIZER,
    WithJsonSchema(_json_schema(1, "longer than 0s")),
]
"""A pydantic field type: a duration longer than zero."""

DurationOrZero = Annotated[
    timedelta,
    BeforeValidator(_validator(allow_zero=True)),
    _SERIALIZER,
    WithJsonSchema(_json_schema(0, "(0s allowed)")),
]
"""A pydantic field type: a duration of zero or more (for settings where ``0s`` means "none")."""
