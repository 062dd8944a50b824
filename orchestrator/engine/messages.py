"""What an event and a due timer do to a customer's journeys (a basket decision: :mod:`orchestrator.engine.send`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from orchestrator.actions import Action, ConsentChange, TimerPurpose
from orchestrator.dedupe import EngineLimits, remember
from orchestrator.engine.audience import qualify
from orchestrator.engine.deadline import expires_at_timer, held_until
from orchestrator.engine.draft import Draft, duplicate_trace
from orchestrator.engine.entry import refusal
from orchestrator.engine.expiry import expire_held_send
from orchestrator.engine.profile import fold_profile
from orchestrator.engine.scores import enter_crossed, fold_scores
from orchestrator.engine.send import resend_deferred
from orchestrator.engine.steps import advance, awaited_events
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.fastmodel import fast_build, fast_new
from orchestrator.journey import model as m
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.windows import next_opening
from orchestrator.state import CustomerState, Instance, TimerRef
from orchestrator.timeutil import iso_utc

CONSENT_TYPES: Final = {"consent.unsubscribed": False, "consent.resubscribed": True}

Result = tuple[CustomerState, list[Action]]


# ---------------------------------------------------------------- events


def on_event(state: CustomerState, ev: CustomerEvent, journeys: JourneySet, now: datetime, limits: EngineLimits) -> Result:
    """Deduplicate, fold into the profile, then: goals and exits, awaited events, entries."""
    recent = remember(state.recent_event_ids, ev.event_id, now, limits)
    if recent is None:  # seen within the dedupe window
        return state, [duplicate_trace(state.customer_id, "", ev, now)]
    profile = fold_profile(state.profile, ev, journeys.tracked.get(ev.type, ()))
    crossed: tuple[CompiledJourney, ...] = ()
    scoring = journeys.score_rules.get(ev.type)  # journeys/scores.yaml: the one lookup for types without rules
    if scoring is not None:
        profile, crossed = fold_scores(profile, ev, scoring, journeys, now)
    subscribed = CONSENT_TYPES.get(ev.type)
    entries = journeys.triggered_by(ev.type)
    if not entries and not crossed and subscribed is None and not journeys.qualifying and not _moves_an_instance(state, ev.type, journeys):
        # the common case: nothing listens to this event; only the profile changes
        fields = state.__dict__.copy()
        fields["profile"] = profile
        fields["recent_event_ids"] = recent
        fields["events_seen"] = state.events_seen + 1
        return fast_build(CustomerState, fields), []

    draft = Draft(state, journeys, now, profile)
    if subscribed is not None:
        draft.emit(
            fast_new(
                ConsentChange,
                kind="consent",
                customer_id=state.customer_id,
                channel=ev.data.get("channel", "all"),
                brand=ev.data.get("brand"),
                subscribed=subscribed,
                at=ev.occurred_at,
            )
        )
    for inst in draft.live():
        _event_for_instance(draft, inst, ev)
    if entries:
        ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, draft.profile, now, instances=draft.instances.values())
        for journey in entries:
            if ctx.profile is not draft.profile:  # an update_profile step of a journey entered before changed it
                ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, draft.profile, now)
            why_not = refusal(draft, journey, ctx)
            if why_not is not None:
                draft.not_entered(journey, ev, why_not)
                continue
            inst = draft.start_instance(journey, ev)
            advance(draft, inst, journey, journey.journey.start)
    if crossed:  # entry.score: this event's points took a score across a journey's threshold
        enter_crossed(draft, ev, crossed, entries)
        entries = [*entries, *crossed]
    if journeys.qualifying:
        qualify(
            draft, ev, Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, draft.profile, now, instances=draft.instances.values()), entries
        )
    return draft.finish(recent_event_ids=recent, events_seen=state.events_seen + 1), draft.actions


def _moves_an_instance(state: CustomerState, event_type: str, journeys: JourneySet) -> bool:
    """Whether a live instance listens to ``event_type``, or runs a journey version no longer loaded (it must end)."""
    if event_type in journeys.listened:
        for inst in state.instances:
            journey = journeys.get(inst.journey_id, inst.version)
            if journey is None or event_type in journey.listens:
                return True
        return False
    versions = journeys.versions  # no loaded journey listens: only an instance of an unloaded version matters
    for inst in state.instances:
        loaded = versions.get(inst.journey_id)
        if not loaded or inst.version not in loaded:
            return True
    return False


def _event_for_instance(draft: Draft, inst: Instance, ev: CustomerEvent) -> None:
    """A goal ends ``inst`` (converted), an exit ends it, an awaited event moves it on."""
    journey = draft.journeys.get(inst.journey_id, inst.version)
    if journey is None:
        draft.end_unloaded(draft.own(inst))
        return
    if ev.type not in journey.listens:
        return
    ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, draft.profile, draft.now, inst.entry_data, draft.instances.values())
    goal = next((r for r in journey.goals.get(ev.type, ()) if r.predicate(ctx)), None)
    if goal is not None:
        draft.end(draft.own(inst), journey, "goal", "goal", goal=goal.name, event_id=ev.event_id)
        return
    leave = next((r for r in journey.exits.get(ev.type, ()) if r.predicate(ctx)), None)
    if leave is not None:
        draft.end(draft.own(inst), journey, f"exit:{leave.name}", "exited", exit=leave.name, event_id=ev.event_id)
        return
    if inst.status == "waiting" and not _match_awaited(draft, inst, journey, ev, ctx) and ev.type in journey.activity.get(inst.step, ()):
        draft.activity(draft.own(inst), min(ev.occurred_at, draft.now))  # a quiet_for wait: the quiet period starts again


def _match_awaited(draft: Draft, inst: Instance, journey: CompiledJourney, ev: CustomerEvent, ctx: Ctx) -> bool:
    matchers = journey.matchers.get(inst.step, ())
    for awaited in inst.awaiting:
        if awaited.event_type != ev.type or (awaited.send_id is not None and ev.data.get("send_id") != awaited.send_id):
            continue
        matcher = matchers[awaited.index]
        if matcher.predicate(ctx):
            owned = draft.own(inst)
            draft.match(owned, ev, matcher.next)
            advance(draft, owned, journey, matcher.next)
            return True
    return False


# ---------------------------------------------------------------- timers


def on_timer(state: CustomerState, fired: TimerFired, journeys: JourneySet, now: datetime) -> Result:
    """A timeout, delay, window or deferred send came due; unknown (stale, duplicate) timer ids are ignored."""
    found = _timer_owner(state, fired.timer_id)
    if found is None:
        return state, []
    owner, ref = found
    draft = Draft(state, journeys, now)
    journey = journeys.get(owner.journey_id, owner.version)
    inst = draft.own(owner)
    draft.timer_fired(inst, fired.timer_id)
    if journey is None:
        draft.end_unloaded(inst)
    else:
        handler = ON_TIMER.get(ref.purpose, _unexpected_timer)
        if ref.purpose == "deferred_send" and inst.deferred is None:
            handler = _unexpected_timer
        handler(draft, inst, journey, journey.steps[inst.step], ref)
    return draft.finish(), draft.actions


def _timer_owner(state: CustomerState, tid: str) -> tuple[Instance, TimerRef] | None:
    for inst in state.instances:
        for ref in inst.timers:
            if ref.timer_id == tid:
                return inst, ref
    return None


TimerHandler = Callable[[Draft, Instance, CompiledJourney, m.Step, TimerRef], None]


def _timeout(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    target = step_def.on_timeout if isinstance(step_def, m.WaitStep) else None
    draft.trace(inst, "timeout", inst.step, target, timer_id=ref.timer_id)
    advance(draft, inst, journey, target)


def _quiet_check(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    """A quiet_for wait's timer: timed out, quiet long enough, or (activity since) armed once more for the rest."""
    assert isinstance(step_def, m.WaitStep) and step_def.quiet_for is not None and inst.quiet_since is not None
    now = draft.now
    if inst.wait_until is not None and now >= inst.wait_until:
        draft.quiet_over(inst)
        draft.trace(inst, "timeout", inst.step, step_def.on_timeout, timer_id=ref.timer_id)
        advance(draft, inst, journey, step_def.on_timeout)
        return
    quiet_since = inst.quiet_since
    if now - quiet_since >= step_def.quiet_for:
        draft.quiet_over(inst)
        draft.trace(inst, "quiet", inst.step, step_def.on_quiet, timer_id=ref.timer_id, quiet_since=iso_utc(quiet_since))
        advance(draft, inst, journey, step_def.on_quiet)
        return
    draft.still_waiting(inst, inst.step, awaited_events(inst, journey, inst.step), step_def.quiet_for)


def _delay_over(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    target = getattr(step_def, "next", None)
    draft.trace(inst, "resumed", inst.step, target, timer_id=ref.timer_id)
    advance(draft, inst, journey, target)


def _window_open(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    if isinstance(step_def, m.SendStep):  # the send step runs again, now inside its window
        if step_def.expires_after is not None and expires_at_timer(inst, step_def, ref.due_at):  # held by the window until its deadline
            expire_held_send(draft, inst, journey, step_def)
            return
        draft.send_window_open(inst)
        draft.trace(inst, "resumed", inst.step, inst.step, timer_id=ref.timer_id, reason="send window open")
        advance(draft, inst, journey, inst.step, resume=True)
        return
    target = getattr(step_def, "next", None)
    draft.trace(inst, "resumed", inst.step, target, timer_id=ref.timer_id, reason="window open")
    advance(draft, inst, journey, target)


def _retry_deferred(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    """The deferred send goes to the basket again, unless the step's send window is closed now: then it waits for it."""
    assert isinstance(step_def, m.SendStep)
    if step_def.expires_after is not None and expires_at_timer(inst, step_def, ref.due_at):  # held by the basket until its deadline
        expire_held_send(draft, inst, journey, step_def)
        return
    window = journey.windows.get(inst.step)
    opening = next_opening(window, draft.profile.timezone, draft.now) if window is not None else None
    if opening is not None:  # e.g. the customer's time zone changed since the retry was planned
        draft.hold_deferred(inst, held_until(inst, step_def, opening) or opening)
        return
    resend_deferred(draft, inst, step_def, ref)


def _unexpected_timer(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    """A timer whose purpose no longer fits the step (should not happen): move on rather than park without a timer."""
    target = getattr(step_def, "on_timeout", None) or getattr(step_def, "next", None)
    draft.trace(inst, "resumed", inst.step, target, timer_id=ref.timer_id, reason=f"unexpected {ref.purpose} timer")
    advance(draft, inst, journey, target)


ON_TIMER: dict[TimerPurpose, TimerHandler] = {
    "timeout": _timeout,
    "delay": _delay_over,
    "window": _window_open,
    "deferred_send": _retry_deferred,
    "quiet": _quiet_check,
}
"""One handler per timer purpose (``tests/unit/test_closed_sets.py`` checks that none is missing)."""
