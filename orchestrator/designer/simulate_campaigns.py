"""The runs of scheduled audiences (campaigns) on a simulation's virtual clock: when each run begins and whom it reaches.

The semantics are described in :mod:`orchestrator.designer.simulate`; :mod:`~orchestrator.designer.simulate_run`
carries out the checks.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

from orchestrator.designer.simulate_result import CampaignRun
from orchestrator.journey.loader import JourneySet
from orchestrator.journey.schedule import GRACE, Run, ScheduleSpec, open_runs
from orchestrator.state import CustomerState

_AHEAD = timedelta(hours=14)
"""How long before its wall-clock time a local run can reach a customer (UTC+14); ``open_runs`` reads its clock there."""
_BEHIND = timedelta(hours=12)
"""How long after it (UTC-12)."""
_PERIOD = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31)}
"""From one occurrence, this far on is the next one and not yet the one after (months: days 1-28 are 28-31 days apart)."""


def reach(run: Run) -> tuple[datetime, datetime]:
    """The first and the last instant a run can reach a customer, whatever their time zone."""
    if not run.local:
        return run.moment, run.moment
    wall = run.moment.replace(tzinfo=UTC)
    return wall - _AHEAD, wall + _BEHIND


def runs_between(schedule: ScheduleSpec, start: datetime, end: datetime) -> list[Run]:
    """Every run of ``schedule`` that can reach a customer between ``start`` and ``end``, in the order they begin.

    Built on :func:`~orchestrator.journey.schedule.open_runs`, where the semantics live:
    from one run, the newest run a period later is the next one.
    """
    found: dict[str, Run] = {}
    if schedule.every is None:
        found = {r.run_id: r for r in open_runs(schedule, start)}
    else:
        probe = start - timedelta(days=2)
        shift = _AHEAD if schedule.local else timedelta(0)
        while True:
            newest = open_runs(schedule, probe)
            if newest[0].run_id in found:  # pragma: no cover - every period moves on by at least an occurrence
                break
            found.update((r.run_id, r) for r in newest)
            if reach(newest[0])[0] > end:
                break
            probe = newest[0].moment.replace(tzinfo=UTC) + _PERIOD[schedule.every] - shift
    runs = [r for r in found.values() if reach(r)[1] >= start and reach(r)[0] <= end]
    return sorted(runs, key=lambda r: reach(r)[0])


class _Campaigns:
    """The runs of the scheduled audiences, and the customers each run reaches, in due order.

    A run begins (:meth:`begin`) at the first instant it can reach a customer (a local run:
    14 h before its wall-clock time, in UTC+14), with the customers seen so far, as a
    worker's pass over its partitions does; each of them is checked at their due time
    (``Run.due_for`` their time zone, as it is then). Deploy and retire lines plan the runs
    again (:meth:`plan`): a run follows the journey's live version when it begins.
    """

    def __init__(self) -> None:
        self.planned: list[tuple[datetime, int, str, Run]] = []
        """Runs not begun yet: (first reach, seq, journey id, run)."""
        self.checks: list[tuple[datetime, int, CampaignRun, str]] = []
        """Customers to check: (due, seq, run, customer id)."""
        self.runs: dict[tuple[str, str], CampaignRun] = {}
        self.seq = 0

    def plan(self, journeys: JourneySet, start: datetime, end: datetime, deployed: str | None = None) -> None:
        """(Re)plan the runs of every live scheduled journey that begin between ``start`` and ``end``; for the journey
        ``deployed`` at ``start``, also its runs still open then (within their grace), which a worker carries out at once."""
        self.planned = []
        for journey in journeys.scheduled:
            schedule = journey.journey.entry.audience.schedule  # type: ignore[union-attr]
            late = journey.id == deployed
            for run in runs_between(schedule, start - GRACE if late else start, end):  # type: ignore[arg-type]
                if (journey.id, run.run_id) not in self.runs and (not late or reach(run)[1] + run.grace > start):
                    self.seq += 1
                    self.planned.append((max(reach(run)[0], start), self.seq, journey.id, run))
        heapq.heapify(self.planned)

    def next_at(self) -> datetime | None:
        times = [heap[0][0] for heap in (self.planned, self.checks) if heap]
        return min(times) if times else None

    def begin_due(self) -> bool:
        """Does a run begin before the next check is due?"""
        return bool(self.planned) and (not self.checks or self.planned[0][0] <= self.checks[0][0])

    def begin(self, journeys: JourneySet, states: dict[str, CustomerState], now: datetime) -> CampaignRun | None:
        """Begin the next planned run: queue every customer seen so far (None: its journey is no longer a live campaign)."""
        _, _, journey_id, run = heapq.heappop(self.planned)
        journey = journeys.live.get(journey_id)
        audience = journey.journey.entry.audience if journey is not None else None
        if journey is None or audience is None or audience.schedule is None:
            return None
        campaign = CampaignRun(journey_id, journey.version, run, audience.throttle.per_second)
        self.runs[(journey_id, run.run_id)] = campaign
        for cid, state in states.items():
            due = run.due_for(state.profile.timezone)
            if due >= now or run.open_for(state.profile.timezone, now):  # begun late (a deploy): the passed zones still open, now
                self.push(max(due, now), campaign, cid)
        return campaign

    def push(self, due: datetime, campaign: CampaignRun, cid: str) -> None:
        self.seq += 1
        heapq.heappush(self.checks, (due, self.seq, campaign, cid))

    def pop_check(self) -> tuple[datetime, CampaignRun, str]:
        due, _, campaign, cid = heapq.heappop(self.checks)
        return due, campaign, cid
