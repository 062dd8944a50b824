"""When a campaign runs: the semantics of ``entry.audience.schedule``.

A **run** is one evaluation of a journey's audience. Every run has an id, and a customer
enters a journey at most once per run (the engine remembers the run like an event id).

* ``{at: "2026-12-01T10:00:00Z"}``: once, at that instant. Run id ``2026-12-01T10:00Z``.
* ``{every: day, at: "10:00"}``: every day at 10:00 UTC; ``every: week`` needs ``on: mon``,
  ``every: month`` needs ``day: 1`` (1-28); ``every: hour`` runs at minute MM of every hour
  (the hour in ``at: "00:MM"`` is ignored). Run id: the instant, e.g. ``2026-12-07T10:00Z``.
* ``local: true``: the time is in each customer's time zone (``profile.timezone``; UTC when
  unknown), so one run reaches customers over about 26 hours, each at 10:00 their time.
  A once-only local ``at`` has no offset: ``{at: "2026-12-01T10:00", local: true}``.
  Run id: the local date and time with an ``L``, e.g. ``2026-12-01T10:00L``. ``every: hour``
  cannot be local.

A run **reaches** a customer at its time (its *due* time: the instant, or the local time in
the customer's zone) and stays **open** for that customer for its reach (:meth:`Run.reach`:
:data:`GRACE`, 24 h, for an hourly schedule one hour; never more than half the engine's
dedupe window): a worker that was down when the run came due still carries it out when it
is back within that time, and a worker down longer misses that run (the next one comes).
The worker's scan and ``simulate`` both take it from :meth:`Run.reach`. Only the newest
occurrence of a recurring schedule is carried out: runs missed entirely are not made up.
The due time is the customer's as it is then: a customer who first appears while the run
is open, or whose zone changes before they are due, is reached at their due time (at once
if it has passed but the run is still open for them).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from orchestrator.dedupe import DEFAULT_LIMITS
from orchestrator.timeutil import resolve_tz

GRACE = timedelta(hours=24)
"""How long a run stays open for a customer after it reached them (hourly runs: one hour; see :meth:`Run.reach`)."""
_EARLIEST = timedelta(hours=14)
"""The most advanced time zone (UTC+14): a local run reaches its first customers that much before UTC."""
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ScheduleSpec(Protocol):
    """What this module reads of a journey's ``schedule:`` (``orchestrator.journey.model.Schedule``)."""

    @property
    def at(self) -> str: ...
    @property
    def every(self) -> str | None: ...
    @property
    def on(self) -> str | None: ...
    @property
    def day(self) -> int | None: ...
    @property
    def local(self) -> bool: ...


@dataclass(frozen=True)
class Run:
    """One run of a schedule: a UTC instant, or (``local``) a date and a time of day in every customer's zone."""

    run_id: str
    moment: datetime
    """UTC runs: the instant. Local runs: the date and time of day, without a zone."""
    local: bool
    grace: timedelta = GRACE

    def due_for(self, timezone: str | None) -> datetime:
        """When this run reaches a customer in ``timezone`` (aware, UTC)."""
        if not self.local:
            return self.moment
        # through UTC so a local time inside a DST gap lands on a real instant
        return self.moment.replace(tzinfo=resolve_tz(timezone)).astimezone(UTC)

    def reach(self, dedupe_window: timedelta = DEFAULT_LIMITS.dedupe_window) -> timedelta:
        """How long after a customer's due time the run still reaches them: the one answer, for the worker and simulate.

        Its grace (24 h; hourly runs one hour), but never more than half the engine's dedupe window
        (``ORCH_DEDUPE_WINDOW_DAYS``, 7 days: 3.5 days, so the grace decides unless the window is set
        below 2 days). The engine remembers the run in every customer it reached for the dedupe window
        from when the check was processed (at or after the due time), so a customer looked at again
        within the reach (a redo after a crash or a rebalance) always still remembers it: a run never
        reaches anyone twice. Half rather than all of the window leaves a margin for a check that waited
        in the topic.
        """
        return min(self.grace, dedupe_window / 2)

    def open_for(self, timezone: str | None, now: datetime, dedupe_window: timedelta = DEFAULT_LIMITS.dedupe_window) -> bool:
        """Has the run reached the customer, and does it still reach them (:meth:`reach`)?"""
        due = self.due_for(timezone)
        return due <= now < due + self.reach(dedupe_window)


def schedule_problem(schedule: ScheduleSpec) -> str | None:
    """What is wrong with a schedule, in words a designer can act on; None when it is fine."""
    if schedule.every is None:
        return _once_problem(schedule)
    if schedule.every == "hour" and schedule.local:
        return "every: hour cannot be local (an hour is the same everywhere): drop local"
    if _clock(schedule.at) is None:
        return f'a recurring schedule\'s at is a time of day, HH:MM (e.g. "10:00"), got {schedule.at!r}'
    if (schedule.every == "week") != (schedule.on is not None):
        return "every: week needs on: mon..sun (and only weeks take on:)"
    if (schedule.every == "month") != (schedule.day is not None):
        return "every: month needs day: 1..28 (and only months take day:)"
    return None


def _once_problem(schedule: ScheduleSpec) -> str | None:
    if schedule.on is not None or schedule.day is not None:
        return "on: and day: belong to every: week and every: month; a once-only schedule has neither"
    moment = _datetime(schedule.at)
    if moment is None:
        return f'a once-only schedule\'s at is an ISO date-time, e.g. "2026-12-01T10:00:00Z", got {schedule.at!r}'
    if schedule.local and moment.tzinfo is not None:
        return f"a local schedule's at has no UTC offset (it is each customer's local time): write {moment:%Y-%m-%dT%H:%M}"
    if not schedule.local and moment.tzinfo is None:
        return f'at needs a UTC offset, e.g. "{schedule.at}Z"; or add local: true for each customer\'s local time'
    return None


def open_runs(schedule: ScheduleSpec, now: datetime) -> list[Run]:
    """The runs that may still be open for some customer at ``now``, newest first (at most two)."""
    if schedule.every is None:
        run = _once(schedule)
        return [run] if run is not None else []
    current = _occurrence(schedule, _reference(schedule, now))
    runs = [_run(schedule, current)]
    if schedule.local:  # a local run stays open for the far west while the next reaches the far east
        runs.append(_run(schedule, _occurrence(schedule, current - timedelta(minutes=1))))
    return runs


def _reference(schedule: ScheduleSpec, now: datetime) -> datetime:
    """``now`` as a naive wall-clock time: in UTC, or (local schedules) in the most advanced zone."""
    shift = _EARLIEST if schedule.local else timedelta(0)
    return (now.astimezone(UTC) + shift).replace(tzinfo=None)


def _run(schedule: ScheduleSpec, moment: datetime) -> Run:
    grace = timedelta(hours=1) if schedule.every == "hour" else GRACE
    if schedule.local:
        return _new_run(moment, True, grace)
    return _new_run(moment.replace(tzinfo=UTC), False, grace)


def _once(schedule: ScheduleSpec) -> Run | None:
    moment = _datetime(schedule.at)
    if moment is None:
        return None
    if schedule.local:
        return _new_run(moment.replace(tzinfo=None), True, GRACE)
    return _new_run(moment.astimezone(UTC), False, GRACE)


def _new_run(moment: datetime, local: bool, grace: timedelta) -> Run:
    """A run at ``moment`` (UTC, or a naive wall-clock time when ``local``), its id in the engine's format."""
    from orchestrator.engine.ids import run_id  # the id formats live in the engine, which imports the journey language

    return Run(run_id(moment, local), moment, local, grace)


def _occurrence(schedule: ScheduleSpec, ref: datetime) -> datetime:
    """The latest occurrence at or before the naive wall-clock time ``ref``."""
    clock = _clock(schedule.at) or time(0, 0)
    if schedule.every == "hour":
        moment = ref.replace(minute=clock.minute, second=0, microsecond=0)
        return moment if moment <= ref else moment - timedelta(hours=1)
    day = ref.date()
    for _ in range(62 if schedule.every == "month" else 8):
        if _matches(schedule, day) and datetime.combine(day, clock) <= ref:
            return datetime.combine(day, clock)
        day -= timedelta(days=1)
    raise AssertionError("a valid schedule occurs at least every month")  # pragma: no cover


def _matches(schedule: ScheduleSpec, day: date) -> bool:
    if schedule.every == "week":
        return _WEEKDAYS[day.weekday()] == schedule.on
    if schedule.every == "month":
        return day.day == min(schedule.day or 1, calendar.monthrange(day.year, day.month)[1])
    return True  # every day


def _clock(text: str) -> time | None:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        return None


def _datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
