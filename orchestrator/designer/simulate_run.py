"""One simulation under way: every message through the real processor on a virtual clock, with its timers and campaign runs."""

from __future__ import annotations

import heapq
import os
from datetime import datetime
from typing import Literal

from orchestrator.actions import ArmTimer, CancelTimer
from orchestrator.designer.simulate_campaigns import _Campaigns
from orchestrator.designer.simulate_events import Deploy, InputEvent, Retire, SendOf
from orchestrator.designer.simulate_records import TimerOwner, _record, score_changes
from orchestrator.designer.simulate_result import CampaignRun, SimulationResult, VersionChange
from orchestrator.engine.audience import run_event
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.journey import model as m
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.pressure.basket import Basket
from orchestrator.processor import Result, process
from orchestrator.state import CustomerState
from orchestrator.timeutil import iso_utc


class _Clock:
    """Armed timers ordered by due time; cancelled ones are skipped."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, str, str]] = []
        self.live: dict[tuple[str, str], datetime] = {}
        self.seq = 0

    def arm(self, op: ArmTimer) -> None:
        self.seq += 1
        self.live[(op.customer_id, op.timer_id)] = op.due_at
        heapq.heappush(self.heap, (op.due_at, self.seq, op.customer_id, op.timer_id))

    def cancel(self, op: CancelTimer) -> None:
        self.live.pop((op.customer_id, op.timer_id), None)

    def pop_due(self, until: datetime) -> TimerFired | None:
        while self.heap and self.heap[0][0] <= until:
            due, _, cid, tid = heapq.heappop(self.heap)
            if self.live.get((cid, tid)) == due:
                del self.live[(cid, tid)]
                return TimerFired(customer_id=cid, timer_id=tid, due_at=due)
        return None

    def next_at(self) -> datetime | None:
        """When the next armed timer is due (None: no timer armed)."""
        while self.heap:
            due, _, cid, tid = self.heap[0]
            if self.live.get((cid, tid)) == due:
                return due
            heapq.heappop(self.heap)
        return None


class _Run:
    """One simulation under way: the journeys (changed by deploy and retire lines), states, clock and records."""

    def __init__(self, journeys: JourneySet, basket: Basket, until: datetime) -> None:
        self.journeys = journeys
        self.basket = basket
        self.until = until
        self.clock = _Clock()
        self.campaigns = _Campaigns()
        self.now: datetime | None = None
        self.states: dict[str, CustomerState] = {}
        self.result = SimulationResult()
        self.approved: dict[tuple[str, str | None, str], str] = {}
        """(customer, journey or None for any, step) -> the send id of the latest approved send."""
        self.timer_owners: dict[tuple[str, str], TimerOwner] = {}
        """(customer, timer id) -> the instance that armed the timer, while it is armed."""

    async def message(
        self, message: CustomerEvent | TimerFired | AudienceCheck, now: datetime, resolved: dict[str, str] | None = None
    ) -> Result:
        cid = message.customer_id
        state = self.states.get(cid) or CustomerState.new(cid)
        res = await process(state, message, self.journeys, now, self.basket)
        self.states[cid] = res.state
        scored = score_changes(state, res.state, message.occurred_at) if isinstance(message, CustomerEvent) else None
        _record(self.result, message, now, res, resolved, self._owners(message, res), scored)
        for d in res.sends:
            s = d.send
            self.approved[(cid, None, s.step_id)] = self.approved[(cid, s.journey_id, s.step_id)] = s.send_id
        for op in res.timer_ops:
            if isinstance(op, ArmTimer):
                self.clock.arm(op)
            else:
                self.clock.cancel(op)
        return res

    def _owners(self, message: CustomerEvent | TimerFired | AudienceCheck, res: Result) -> dict[str, TimerOwner]:
        """Timer id -> the instance it belongs to, for the timers this message fired, armed or cancelled."""
        cid = message.customer_id
        owners: dict[str, TimerOwner] = {}
        if isinstance(message, TimerFired) and (cid, message.timer_id) in self.timer_owners:
            owners[message.timer_id] = self.timer_owners.pop((cid, message.timer_id))
        for op in res.timer_ops:
            if isinstance(op, ArmTimer):
                owner = _armed_by(op, res)
                if owner is not None:
                    self.timer_owners[(cid, op.timer_id)] = owners[op.timer_id] = owner
            elif (cid, op.timer_id) in self.timer_owners:
                owners[op.timer_id] = self.timer_owners.pop((cid, op.timer_id))
        return owners

    def tick(self, at: datetime) -> datetime:
        """Move the virtual clock to ``at`` (never back) and return the time now."""
        self.now = at if self.now is None or at > self.now else self.now
        return self.now

    async def timers_until(self, until: datetime) -> None:
        """Fire the timers and carry out the campaign runs due at or before ``until``, in due order (timers first on a tie)."""
        while True:
            timer, campaign = self.clock.next_at(), self.campaigns.next_at()
            if timer is not None and timer <= until and (campaign is None or timer <= campaign):
                fired = self.clock.pop_due(until)
                if fired is not None:
                    await self.message(fired, self.tick(fired.due_at))
            elif campaign is not None and campaign <= until:
                await self._campaign_step(self.tick(campaign))
            else:
                return

    async def _campaign_step(self, now: datetime) -> None:
        if self.campaigns.begin_due():
            begun = self.campaigns.begin(self.journeys, self.states, now)
            if begun is not None:
                self.result.campaigns.append(begun)
            return
        due, campaign, cid = self.campaigns.pop_check()
        await self.audience_check(campaign, cid, due, now)

    async def audience_check(self, campaign: CampaignRun, cid: str, due: datetime, now: datetime) -> None:
        """The run reaches ``cid``: evaluate the audience on what we know now, and enter them through the engine if they are in it."""
        state = self.states[cid]
        timezone = state.profile.timezone
        due_now = campaign.run.due_for(timezone)
        if due_now > due:  # the customer moved west since they were queued
            self.campaigns.push(due_now, campaign, cid)
            return
        journey = self.journeys.live.get(campaign.journey_id)
        if journey is None or journey.journey.entry.audience is None or not campaign.run.open_for(timezone, now):
            return
        check = AudienceCheck(customer_id=cid, journey_id=campaign.journey_id, run_id=campaign.run_id, due_at=due_now)
        campaign.evaluated += 1
        campaign.first_due = min(campaign.first_due or due_now, due_now)
        entry = run_event(check)
        if not journey.audience_when(
            Ctx(entry.type, entry.event_id, entry.occurred_at, entry.data, state.profile, now, instances=state.instances)
        ):
            return
        campaign.in_audience += 1
        campaign.bursts[max(due_now, now)] += 1
        res = await self.message(check, now)
        campaign.entered += sum(t.what == "entered" for t in res.traces)
        campaign.not_entered += sum(t.what == "not_entered" for t in res.traces)

    async def event(self, item: InputEvent) -> None:
        """Process an event line, its ``send_of`` placeholders resolved now (or report and skip it)."""
        cid, at = item.event.customer_id, item.event.occurred_at
        resolved: dict[str, str] = {}
        for ph in item.send_of:
            send_id = self.approved.get((cid, ph.journey, ph.step))
            if send_id is None:
                self.result.errors.append(self._unresolved(item, ph))
                return
            resolved[ph.field] = send_id
        event = item.event.model_copy(update={"data": {**item.event.data, **resolved}}) if resolved else item.event
        await self.message(event, at, resolved or None)

    def _unresolved(self, item: InputEvent, ph: SendOf) -> str:
        scope = f" in journey {ph.journey!r}" if ph.journey else ""
        text = (
            f"{item.source}:{item.line}: {ph.field}: no approved send of step {ph.step!r}{scope} "
            f"for customer {item.event.customer_id!r} at or before {iso_utc(item.event.occurred_at)}"
        )
        if not any(isinstance(j.steps.get(ph.step), m.SendStep) for j in self.journeys if ph.journey in (None, j.id)):
            text += (
                f" (journey {ph.journey!r} has no send step {ph.step!r})" if ph.journey else f" (no journey has a send step {ph.step!r})"
            )
        return text

    def change(self, item: Deploy | Retire) -> None:
        """Apply a deploy or retire line to the journeys (and plan the campaign runs again)."""
        current: list[CompiledJourney] = list(self.journeys)
        facts = self.journeys.facts if self.journeys.facts.source is not None else None  # a facts file stays; implied ones follow
        if isinstance(item, Deploy):
            if item.journey is None:
                raise ValueError(f"{item.where}: deploy not loaded (call prepare first)")
            jid, version, file = item.journey.id, item.journey.version, os.fspath(item.path)
            self.journeys = JourneySet([*current, item.journey], facts, self.journeys.scores)
        else:
            jid, version, file = item.journey_id, item.version, None
            self.journeys = JourneySet(
                [_retired(j) if (j.id, j.version) == (jid, version) else j for j in current], facts, self.journeys.scores
            )
        self.campaigns.plan(self.journeys, item.at, self.until, jid if isinstance(item, Deploy) else None)
        live = self.journeys.newest(jid)
        kind: Literal["deploy", "retire"] = "deploy" if file is not None else "retire"
        self.result.versions.append(VersionChange(item.at, kind, jid, version, live.version if live else None, item.where, file))


def _armed_by(op: ArmTimer, res: Result) -> TimerOwner | None:
    """The instance that armed ``op``: the one holding the timer after the message, else the traced instance the timer id names."""
    for inst in res.state.instances:
        if any(t.timer_id == op.timer_id for t in inst.timers):
            return TimerOwner(inst.journey_id, inst.version, inst.instance_id, inst.step)
    for t in res.traces:  # armed and dropped in the same message (e.g. a deferral a calamity send cancelled)
        if t.instance_id and op.timer_id.startswith(f"{op.customer_id}:{t.instance_id}:"):
            return TimerOwner(t.journey_id, t.journey_version, t.instance_id)
    return None


def _retired(journey: CompiledJourney) -> CompiledJourney:
    return CompiledJourney(journey.journey.model_copy(update={"status": "retired"}), source=journey.source)
