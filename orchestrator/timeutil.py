"""Time helpers shared by journeys, the basket and the designer tools.

One time-zone resolver (:func:`resolve_tz`: unknown or empty names fall back to UTC),
one ISO format for times we print or log (:func:`iso_utc`), and epoch milliseconds
(:func:`to_ms`, :func:`from_ms`: the basket's unit of time, in Python and in Lua).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["EPOCH", "UTC", "find_tz", "from_ms", "iso_utc", "resolve_tz", "to_ms"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_UTC_ZONE = ZoneInfo("UTC")


@lru_cache(maxsize=1024)
def find_tz(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None when there is none (never raises).

    For validation: a journey's ``timezone:`` must name a real zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. "Europe" is a directory
        return None


def resolve_tz(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``; UTC when the name is empty or unknown (a bad profile must not stop a worker)."""
    zone = find_tz(name) if name else None
    return zone or _UTC_ZONE


def iso_utc(at: datetime) -> str:
    """``at`` in UTC as ISO 8601 with a ``Z``, e.g. ``2026-11-10T12:00:00Z`` (a naive ``at`` is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (floored) of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime for epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=ms)
