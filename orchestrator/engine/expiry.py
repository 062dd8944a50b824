"""Message expiry: a send held past its step's deadline is not sent (result ``expired``).

The deadline and when a timer expires a send are in :mod:`orchestrator.engine.deadline`;
this module is what happens at the deadline: one ``expired`` disposition (the send as it
would have gone out; the basket's decision that deferred it, or none when only the send
window held it), a ``send`` trace with ``result: expired``, and the journey goes on at
``on_expired`` (default: ``on_skip``, else ``next``, as for a send that did not happen).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.durations import format_duration
from orchestrator.engine.draft import Draft
from orchestrator.engine.send import build_send
from orchestrator.engine.steps import advance
from orchestrator.journey import model as m
from orchestrator.journey.loader import CompiledJourney
from orchestrator.pressure.basket import Decision
from orchestrator.state import Instance
from orchestrator.timeutil import iso_utc


def expired_target(step_def: m.SendStep) -> str | None:
    """Where the journey goes when the send of ``step_def`` expired: ``on_expired``, else ``on_skip``, else ``next``."""
    if step_def.on_expired is not None:
        return step_def.on_expired
    return step_def.on_skip if step_def.on_skip is not None else step_def.next


def expiry_note(step_def: m.SendStep, deadline: datetime, decision: Decision | None) -> str:
    """The reason of an ``expired`` decision, e.g. ``expired: held by the send window since ...; expires_after 2h passed at ...``."""
    assert step_def.expires_after is not None
    if decision is None:
        held = f"the send window since {iso_utc(deadline - step_def.expires_after)}"
    else:
        reason = decision.reason.split("; retry at ", 1)[0]
        what = "a calamity lock" if decision.outcome == "locked" else f"a basket deferral ({decision.outcome}, code {decision.code})"
        fits = f", fits again at {iso_utc(decision.retry_at)}" if decision.retry_at is not None else ""
        held = f"{what}: {reason}{fits}"
    return f"expired: held by {held}; expires_after {format_duration(step_def.expires_after)} passed at {iso_utc(deadline)}"


def expire_held_send(draft: Draft, inst: Instance, journey: CompiledJourney, step_def: m.SendStep) -> None:
    """The timer holding ``inst``'s send (window opening or deferral retry) came due at its deadline: the send expires.

    ``inst`` is owned by ``draft`` and the fired timer already dropped (:meth:`Draft.timer_fired`).
    """
    deadline = inst.expires_at
    assert deadline is not None
    if inst.deferred is not None:
        send, decision = inst.deferred, inst.deferred_decision
    else:  # held by the send window: the basket was never asked; the send as it would have gone out
        send, decision = build_send(draft, inst, journey, inst.step, step_def), None
    note = expiry_note(step_def, deadline, decision)
    draft.expire_send(inst)
    draft.dispose(send, decision, "expired", note)
    target = expired_target(step_def)
    draft.trace(
        inst, "send", inst.step, target, result="expired", send_id=send.send_id, channel=send.channel, template=send.template, reason=note
    )
    advance(draft, inst, journey, target)
