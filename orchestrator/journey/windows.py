"""Send windows and quiet hours in the customer's time zone (pure; an unknown zone counts as UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from orchestrator.journey.model import WEEKDAYS, Window
from orchestrator.timeutil import resolve_tz


def _minutes(hhmm: str) -> int:
    h, mi = hhmm.split(":")
    return int(h) * 60 + int(mi)


def in_window(window: Window, tz_name: str | None, now: datetime) -> bool:
    """Is ``now`` inside the window, in the window's (or else the customer's) time zone?"""
    local = now.astimezone(resolve_tz(window.timezone or tz_name))
    minute = local.hour * 60 + local.minute
    opens, closes = _minutes(window.from_), _minutes(window.to)
    today = local.date()
    if opens < closes:
        return _opens_on(window, today) and opens <= minute < closes
    # wraps midnight: the part after midnight belongs to the previous day's opening
    if minute >= opens:
        return _opens_on(window, today)
    if minute < closes:
        return _opens_on(window, today - timedelta(days=1))
    return False


def _opens_on(window: Window, day: date) -> bool:
    """Does the window open on ``day`` (a weekday it lists, not a closed date)?"""
    return WEEKDAYS[day.weekday()] in window.days and day not in window.closed


def next_opening(window: Window, tz_name: str | None, now: datetime) -> datetime | None:
    """None when ``now`` is inside the window, else the next time it opens (aware, UTC)."""
    if in_window(window, tz_name, now):
        return None
    tz = resolve_tz(window.timezone or tz_name)
    local = now.astimezone(tz)
    opens = _minutes(window.from_)
    for offset in range(8 + len(window.closed)):  # each closed date can push the next opening a day further
        day = (local + timedelta(days=offset)).date()
        if not _opens_on(window, day):
            continue
        candidate = datetime(day.year, day.month, day.day, opens // 60, opens % 60, tzinfo=tz)
        # normalise through UTC so a local time inside a DST gap lands on a real instant
        candidate_utc = candidate.astimezone(UTC)
        if candidate_utc > now:
            return candidate_utc
    return None  # only when closed dates cover every opening day in reach
