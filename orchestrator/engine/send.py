"""A send's story, told once: the send step builds the send, hands it to the basket, and goes on by the answer.

1. **The step** (:func:`send_step`): reaching a send step with ``expires_after`` fixes the
   send's deadline. Outside the step's send window the instance sleeps until it opens (a
   ``window`` timer; at most until the deadline). Inside it, :func:`build_send` builds the
   :class:`~orchestrator.actions.Send` (template, variables, ``variables_from`` read now, the
   basket's fields, the campaign run) and the engine hands it to the basket: the Send is an
   action, and the instance holds it (``Instance.gating``, in memory only) until the answer.
2. **The basket answers** at once: the processor gates the Send and feeds the decision back
   into ``engine.step`` as a :class:`~orchestrator.actions.GateOutcome` within the same
   message (``processor.gate_loop``), so no stored state ever waits for one. :func:`on_gate`
   says exactly one :class:`~orchestrator.actions.Disposition` per decision:

   * approved: ``approved``, the send id is remembered for the step (waits on its opens and
     clicks use it), on to ``next``; an approved calamity send also cancels every deferred
     commercial or editorial send of the customer (``cancelled``, on to their ``on_skip``);
   * capped or suppressed, ``on_capped: fallback`` with a channel left: ``fallback``, and the
     next channel's send (its own template and variables, :func:`fallback_send`) goes to the
     basket in turn;
   * capped, ``on_capped: defer`` with a retry time and attempts left: ``deferred`` and a
     ``deferred_send`` timer (at the send window's next opening after the retry time, at most
     until the deadline). When it fires, :func:`resend_deferred` hands the send to the basket
     again as attempt N (its own send id), unless the window is closed then or the deadline
     passed (``engine/messages.py``, ``engine/expiry.py``);
   * otherwise: ``capped`` or ``suppressed``, on to ``on_skip`` (or ``next``).

A GateOutcome for a send nobody holds (stale, duplicate) is ignored.

Send ids are :func:`orchestrator.engine.ids.send_id`. This module runs instances on with
:func:`orchestrator.engine.steps.advance`, and ``steps`` imports :func:`send_step` for its
handler table: ``steps`` loads first (the engine package's ``__init__`` sees to it) and is
still loading when this module is, so this module refers to the ``steps`` module, never to
its names at import time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from orchestrator.actions import Action, GateOutcome, Send
from orchestrator.engine import steps
from orchestrator.engine.deadline import held_until
from orchestrator.engine.draft import Draft
from orchestrator.engine.ids import run_of_event, send_id
from orchestrator.fastmodel import fast_copy, fast_new
from orchestrator.journey import model as m
from orchestrator.journey.conditions import MISSING
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.windows import next_opening
from orchestrator.pressure.basket import Decision
from orchestrator.state import CustomerState, Instance, TimerRef
from orchestrator.timeutil import iso_utc

MIN_RETRY: Final = timedelta(seconds=1)
"""A deferred send is retried no sooner than this after the decision."""
MARKETING: Final = ("commercial", "editorial")
"""Communication types a calamity send cancels (their deferred sends are dropped)."""

Result = tuple[CustomerState, list[Action]]


# ---------------------------------------------------------------- the step: build the send, hand it to the basket


def send_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.SendStep) -> steps.Next:
    """Outside the send window: sleep until it opens. Else build the send and hand it to the basket.

    With ``expires_after``, reaching the step fixes the send's deadline, and the window holds it until then at most.
    """
    if step_def.expires_after is not None and not inst.window_ok:  # reached now (not resumed at its window's opening)
        draft.set_deadline(inst, draft.now + step_def.expires_after)
    window = journey.windows.get(step_id)
    if window is not None and not inst.window_ok:
        opening = next_opening(window, draft.profile.timezone, draft.now)
        if opening is not None:
            expires = held_until(inst, step_def, opening)
            if expires is None:
                draft.delay(inst, step_id, "window", opening, "send window")
            else:
                reason = f"send window (opens at {iso_utc(opening)}, after the send expires: held until then)"
                draft.delay(inst, step_id, "window", expires, reason)
            return steps.STOP
    draft.start_send(inst, build_send(draft, inst, journey, step_id, step_def))
    return steps.STOP


def build_send(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.SendStep) -> Send:
    """The send request of a send step: template, variables (``variables_from`` read now), basket fields, campaign run."""
    variables = send_variables(draft, inst, journey, step_id, step_def)
    fallback = step_def.on_capped.channel_names() if step_def.on_capped.action == "fallback" else []
    return fast_new(
        Send,
        kind="send",
        send_id=send_id(draft.customer_id, inst, step_id, step_def.channel, step_def, 0),
        customer_id=draft.customer_id,
        journey_id=inst.journey_id,
        journey_version=inst.version,
        instance_id=inst.instance_id,
        step_id=step_id,
        channel=step_def.channel,
        template=step_def.template,
        comm_type=step_def.comm_type,
        priority=step_def.priority,
        brand=step_def.brand,
        variables=variables,
        timezone=draft.profile.timezone or "UTC",
        on_capped=step_def.on_capped.action,
        fallback_channels=fallback,
        run_id=run_of_event(inst.journey_id, inst.entry_event_id),
    )


def send_variables(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.SendStep) -> dict[str, Any]:
    """A send step's template variables: ``variables``, then ``variables_from`` read now (a missing field is left out)."""
    variables: dict[str, Any] = dict(step_def.variables)
    getters = journey.variables_from.get(step_id)
    if getters:
        ctx = draft.context(inst)
        for name, get in getters:
            value = get(ctx)
            if value is not MISSING:
                variables[name] = value
    return variables


def fallback_send(draft: Draft, inst: Instance, step_def: m.SendStep, send: Send) -> Send:
    """``send`` (capped or suppressed) tried on its next fallback channel, with that channel's template and variables.

    A fallback channel is a name (``sms``: the step's template and variables) or an entry with content of its own
    (``{channel: email, template: cc_script_email, variables: {...}}``: that template, and the step's variables with
    the entry's added over them). Which entry comes next follows from the channels the send still has to try
    (``Send.fallback_channels``), so nothing new is stored in the state.
    """
    remaining = send.fallback_channels
    channel = remaining[0]
    changes: dict[str, object] = {
        "send_id": send_id(draft.customer_id, inst, inst.step, channel, step_def, 0),
        "channel": channel,
        "fallback_channels": list(remaining[1:]),
    }
    entries = step_def.on_capped.channels
    index = len(entries) - len(remaining)
    journey = draft.journeys.get(inst.journey_id, inst.version)
    if journey is not None and 0 <= index < len(entries) and any(not isinstance(e, str) for e in entries):
        entry = step_def.on_capped.fallback(index)  # content per channel: from the step's, whatever the last channel had
        changes["template"] = entry.template or step_def.template
        changes["variables"] = {**send_variables(draft, inst, journey, inst.step, step_def), **entry.variables}
    return fast_copy(send, **changes)


def resend_deferred(draft: Draft, inst: Instance, step_def: m.SendStep, ref: TimerRef) -> None:
    """The deferred send's timer fired inside its window and before its deadline: attempt N goes to the basket."""
    send = draft.retry_deferred(inst, step_def)
    draft.trace(inst, "resumed", inst.step, inst.step, timer_id=ref.timer_id, reason="deferred send retried", attempt=inst.attempt)
    draft.emit(send)


# ---------------------------------------------------------------- the basket's answer


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
    steps.advance(draft, inst, journey, step_def.next)


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
    steps.advance(draft, inst, journey, target)


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
        steps.advance(draft, owned, journey, target)
