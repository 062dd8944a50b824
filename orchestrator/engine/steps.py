"""Running an instance through its steps: one handler per step type.

:func:`advance` runs an instance from a step until it parks (a send waiting for the
basket, a wait, a delay or window, a deferred send) or ends. Each step type has one
handler in :data:`HANDLERS`; a handler returns the id of the next step to run, ``None``
when the journey is complete, or :data:`STOP` when the instance parked or ended. The send
step's handler and everything after it (the basket's answer) are in
:mod:`orchestrator.engine.send`; ``update_profile`` and ``emit`` in
:mod:`orchestrator.engine.effects`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from orchestrator.engine.draft import Draft
from orchestrator.engine.effects import emit_step, update_profile_step
from orchestrator.engine.ids import choose_variant
from orchestrator.engine.send import send_step
from orchestrator.fastmodel import fast_new
from orchestrator.journey import model as m
from orchestrator.journey.loader import CompiledJourney
from orchestrator.journey.windows import next_opening
from orchestrator.state import Awaited, Instance

MAX_TRANSITIONS: Final = 100
"""Steps one instance may take in one call before it is aborted (a safety net; validate rejects loops without a wait)."""


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()
"""A handler's answer when the instance parked or ended: nothing more to run now."""

Next = str | None | _Stop
Handler = Callable[[Draft, Instance, CompiledJourney, str, Any], Next]


def advance(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str | None, resume: bool = False) -> None:
    """Run ``inst`` (owned by ``draft``) from ``step_id`` until it parks or ends.

    ``resume``: ``inst`` is already at ``step_id`` (a send step whose window just opened),
    so the step is run again without counting a new visit.
    """
    for _ in range(MAX_TRANSITIONS):
        if step_id is None:
            draft.end(inst, journey, "completed", "exited")
            return
        step_def = journey.steps[step_id]
        if not resume:
            draft.enter_step(inst, step_id, step_def.type)
        resume = False
        handler = HANDLERS.get(type(step_def)) or _handler_of_subclass(step_def)
        nxt = handler(draft, inst, journey, step_id, step_def)
        if nxt is STOP:
            return
        step_id = nxt  # type: ignore[assignment]  # not STOP: a step id or None
    draft.end(inst, journey, "aborted", "exited", reason=f"more than {MAX_TRANSITIONS} steps without a wait")


def wait_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.WaitStep) -> Next:
    """Wait for the listed events until the timeout (or, with ``quiet_for``, until the customer is quiet).

    A ``send_step:`` matcher waits for that exact send.
    """
    awaiting = awaited_events(inst, journey, step_id)
    if step_def.quiet_for is not None:
        until = draft.now + step_def.timeout if step_def.timeout is not None else None
        draft.wait_quiet(inst, step_id, awaiting, step_def.quiet_for, until)
        return STOP
    assert step_def.timeout is not None  # the model requires it without quiet_for
    draft.wait(inst, step_id, awaiting, draft.now + step_def.timeout)
    return STOP


def awaited_events(inst: Instance, journey: CompiledJourney, step_id: str) -> list[Awaited]:
    """What a wait step listens for: each matcher (one for a send that never went out is left out)."""
    out = []
    for matcher in journey.matchers[step_id]:
        sent_id = None
        if matcher.send_step is not None:
            sent_id = inst.sent.get(matcher.send_step)
            if sent_id is None:
                continue  # that message never went out: nothing to open
        out.append(fast_new(Awaited, event_type=matcher.event_type, send_id=sent_id, index=matcher.index))
    return out


def branch_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.BranchStep) -> Next:
    """The first case whose conditions hold, else the default."""
    ctx = draft.context(inst)
    target, label = step_def.default, "default"
    for predicate, case_next, name in journey.cases[step_id]:
        if predicate(ctx):
            target, label = case_next, name
            break
    draft.trace(inst, "branch", step_id, target, case=label)
    return target


def split_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.SplitStep) -> Next:
    """The customer's variant: the one pinned earlier (sticky), else chosen by hash and pinned."""
    key = f"{journey.id}/{step_id}"
    pinned = draft.variant(key)
    variant = next((v for v in step_def.variants if v.name == pinned), None) if pinned else None
    sticky = variant is not None
    if variant is None:
        variant = choose_variant(draft.customer_id, journey.id, step_def, step_id)
        draft.remember_variant(key, variant.name)
    draft.trace(inst, "split", step_id, variant.next, variant=variant.name, sticky=sticky)
    return variant.next


def delay_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.DelayStep) -> Next:
    draft.delay(inst, step_id, "delay", draft.now + step_def.duration, "delay")
    return STOP


def window_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.WindowStep) -> Next:
    """Go on at once inside the window, else sleep until it opens."""
    opening = next_opening(journey.windows[step_id], draft.profile.timezone, draft.now)
    if opening is None:
        return step_def.next
    draft.delay(inst, step_id, "window", opening, "window")
    return STOP


def end_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: m.EndStep) -> Next:
    draft.end(inst, journey, step_def.outcome, "exited")
    return STOP


HANDLERS: dict[type[Any], Handler] = {
    m.SendStep: send_step,
    m.WaitStep: wait_step,
    m.BranchStep: branch_step,
    m.SplitStep: split_step,
    m.DelayStep: delay_step,
    m.WindowStep: window_step,
    m.UpdateProfileStep: update_profile_step,
    m.EmitStep: emit_step,
    m.EndStep: end_step,
}
"""The step types and their handlers (looked up by exact type: cheaper than isinstance)."""


def _handler_of_subclass(step_def: Any) -> Handler:
    for cls, handler in HANDLERS.items():
        if isinstance(step_def, cls):
            return handler
    raise TypeError(f"no handler for step type {type(step_def).__name__}")
