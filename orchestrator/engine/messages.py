"""What each kind of message does to a customer's journeys: an event, a due timer, a basket decision."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from orchestrator.actions import Action, ConsentChange, GateOutcome, Send, Trace
from orchestrator.dedupe import EngineLimits, remember
from orchestrator.engine.audience import qualify
from orchestrator.engine.deadline import expires_at_timer, held_until
from orchestrator.engine.draft import Draft
from orchestrator.engine.entry import refusal
from orchestrator.engine.expiry import expire_held_send
from orchestrator.engine.fallback import fallback_send
from orchestrator.engine.profile import fold_profile
from orchestrator.engine.scores import enter_crossed, fold_scores
from orchestrator.engine.steps import advance, awaited_events
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.fastmodel import fast_build, fast_new
from orchestrator.journey import model as m
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.windows import next_opening
from orchestrator.pressure.basket import Decision
from orchestrator.state import CustomerState, Instance, TimerRef
from orchestrator.timeutil import iso_utc

MIN_RETRY: Final = timedelta(seconds=1)
"""A deferred send is retried no sooner than this after the decision."""
CONSENT_TYPES: Final = {"consent.unsubscribed": False, "consent.resubscribed": True}
MARKETING: Final = ("commercial", "editorial")
"""Communication types a calamity send cancels (their deferred sends are dropped)."""

Result = tuple[CustomerState, list[Action]]


# ---------------------------------------------------------------- events


def on_event(state: CustomerState, ev: CustomerEvent, journeys: JourneySet, now: datetime, limits: EngineLimits) -> Result:
    """Deduplicate, fold into the profile, then: goals and exits, awaited events, entries."""
    recent = remember(state.recent_event_ids, ev.event_id, now, limits)
    if recent is None:  # seen within the dedupe window
        return state, [_duplicate_trace(state, ev, now)]
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


def _duplicate_trace(state: CustomerState, ev: CustomerEvent, now: datetime) -> Action:
    return fast_new(
        Trace,
        kind="trace",
        customer_id=state.customer_id,
        journey_id="",
        journey_version=0,
        instance_id="",
        step_id=None,
        what="duplicate",
        edge=None,
        detail={"event_id": ev.event_id, "type": ev.type},
        at=now,
    )


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
        handler = _ON_TIMER.get(ref.purpose, _unexpected_timer)
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
    send = draft.retry_deferred(inst, step_def)
    draft.trace(inst, "resumed", inst.step, inst.step, timer_id=ref.timer_id, reason="deferred send retried", attempt=inst.attempt)
    draft.emit(send)


def _unexpected_timer(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.Step, ref: TimerRef) -> None:
    """A timer whose purpose no longer fits the step (should not happen): move on rather than park without a timer."""
    target = getattr(step_def, "on_timeout", None) or getattr(step_def, "next", None)
    draft.trace(inst, "resumed", inst.step, target, timer_id=ref.timer_id, reason=f"unexpected {ref.purpose} timer")
    advance(draft, inst, journey, target)


_ON_TIMER: dict[str, TimerHandler] = {
    "timeout": _timeout,
    "delay": _delay_over,
    "window": _window_open,
    "deferred_send": _retry_deferred,
    "quiet": _quiet_check,
}


# ---------------------------------------------------------------- basket decisions


def on_gate(state: CustomerState, outcome: GateOutcome, journeys: JourneySet, now: datetime) -> Result:
    """The basket's decision on a send: exactly one Disposition, then the journey goes on."""
    sid = outcome.send.send_id
    owner = next((i for i in state.instances if i.gating is not None and i.gating.send_id == sid), None)
    if owner is None:
        return state, []  # not a send this customer is waiting on (stale/duplicate)
    journey = journeys.get(owner.journey_id, owner.version)
    draft = Draft(state, journeys, now)
    inst = draft.own(owner)
    send = draft.gate_answered(inst)
    decision = outcome.decision
    if journey is None:
        draft.dispose(send, decision, "cancelled", "journey version no longer loaded")
        draft.end_unloaded(inst)
        return draft.finish(), draft.actions
    step_def = journey.steps[inst.step]
    assert isinstance(step_def, m.SendStep)
    if decision.outcome == "approved":
        _approved(draft, inst, journey, step_def, send, decision)
    elif not _fell_back(draft, inst, step_def, send, decision) and not _deferred(draft, inst, journey, step_def, send, decision):
        _not_sent(draft, inst, journey, step_def, send, decision)
    return draft.finish(), draft.actions


def _approved(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.SendStep, send: Send, decision: Decision) -> None:
    draft.dispose(send, decision, "approved", decision.reason)
    draft.sent(inst, send)
    draft.trace(
        inst,
        "send",
        inst.step,
        step_def.next,
        result="approved",
        send_id=send.send_id,
        channel=send.channel,
        template=send.template,
        reason=decision.reason,
    )
    if send.comm_type == "calamity":
        _cancel_marketing(draft, reason=f"calamity send {send.send_id} approved")
    advance(draft, inst, journey, step_def.next)


def _fell_back(draft: Draft, inst: Instance, step_def: m.SendStep, send: Send, decision: Decision) -> bool:
    """``on_capped: fallback``: try the next channel at the basket. False when there is none."""
    if step_def.on_capped.action != "fallback" or not send.fallback_channels:
        return False
    retry = fallback_send(draft, inst, step_def, send)
    channel = retry.channel
    content = f" with template {retry.template}" if retry.template != step_def.template else ""
    draft.dispose(send, decision, "fallback", f"{decision.reason}; falling back to {channel}{content}")
    draft.trace(
        inst,
        "send",
        inst.step,
        inst.step,
        result="fallback",
        send_id=send.send_id,
        channel=send.channel,
        template=send.template,
        fallback_to=channel,
        fallback_template=retry.template,
        reason=decision.reason,
    )
    draft.fall_back(inst, retry)
    return True


def _deferred(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.SendStep, send: Send, decision: Decision) -> bool:
    """``on_capped: defer``: retry when the basket says it would fit, inside the step's send window.

    False without a retry time or attempts left.
    """
    policy = step_def.on_capped
    if policy.action != "defer" or decision.retry_at is None or inst.attempt >= policy.max_attempts:
        return False
    due = max(decision.retry_at, draft.now + MIN_RETRY)
    window = journey.windows.get(inst.step)
    opening = next_opening(window, draft.profile.timezone, due) if window is not None else None
    due = opening or due
    draft.defer_send(inst, send, decision, due, in_window=opening is not None, expires=held_until(inst, step_def, due))
    return True


def _not_sent(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.SendStep, send: Send, decision: Decision) -> None:
    """Capped or suppressed for good: go on at ``on_skip`` (or ``next``)."""
    result = "capped" if decision.outcome == "capped" else "suppressed"
    note = decision.reason
    if step_def.on_capped.action == "defer":
        note += "; not deferred: " + ("no retry time" if decision.retry_at is None else f"gave up after {inst.attempt} deferrals")
    elif step_def.on_capped.action == "fallback":
        note += "; no fallback channel left"
    draft.dispose(send, decision, result, note)
    target = step_def.on_skip if step_def.on_skip is not None else step_def.next
    draft.trace(inst, "send", inst.step, target, result=result, send_id=send.send_id, channel=send.channel, reason=note)
    draft.give_up_send(inst)
    advance(draft, inst, journey, target)


def _cancel_marketing(draft: Draft, reason: str) -> None:
    """A calamity send went out: drop every deferred commercial/editorial send of this customer."""
    for inst in draft.live():
        if inst.status != "deferred" or inst.deferred is None or inst.deferred.comm_type not in MARKETING:
            continue
        journey = draft.journeys.get(inst.journey_id, inst.version)
        owned = draft.own(inst)
        send, decision = draft.cancel_deferred(owned)
        draft.dispose(send, decision, "cancelled", reason)
        if journey is None:
            draft.end_unloaded(owned, "journey version no longer loaded")
            continue
        step_def = journey.steps[owned.step]
        target = step_def.on_skip if step_def.on_skip is not None else step_def.next
        draft.trace(owned, "send", owned.step, target, result="cancelled", send_id=send.send_id, reason=reason)
        advance(draft, owned, journey, target)
