"""May this event start the journey for this customer? And if not, why not.

A trigger event enters a customer when no competing journey holds them (``entry.exclusive_with``,
either side may say it), the journey's re-entry rule allows it, every
``entry.when`` condition holds on the event and every ``entry.profile`` condition holds
on what we know about the customer, checked in that order. When one of them keeps the
customer out, :func:`refusal` says which, in words a designer can act on; the engine
puts it on the journey log as a ``not_entered`` trace (``simulate`` and
``orchestrator explain`` show it).
"""

from __future__ import annotations

import json

from orchestrator.engine.draft import Draft
from orchestrator.journey.conditions import MISSING, Ctx
from orchestrator.journey.loader import CompiledJourney
from orchestrator.timeutil import iso_utc


def refusal(draft: Draft, journey: CompiledJourney, ctx: Ctx) -> str | None:
    """None when the event enters the customer into ``journey``, else the reason it does not."""
    why = reentry_refusal(draft, journey)
    if why is not None:
        return why
    if not journey.entry_when(ctx):
        return "entry.when: " + _failed_condition(journey, "entry.when", ctx)
    if not journey.entry_profile(ctx):
        return "entry.profile: " + _failed_condition(journey, "entry.profile", ctx)
    return None


def reentry_refusal(draft: Draft, journey: CompiledJourney) -> str | None:
    """What keeps a customer out whatever the conditions: a competing journey (``exclusive_with``), the re-entry rule."""
    competing = draft.journeys.exclusive.get(journey.id)
    if competing:
        live = next((i for i in draft.instances.values() if i.journey_id in competing), None)
        if live is not None:
            return (
                f"exclusive_with: the customer is in the competing journey {live.journey_id} "
                f"(instance {live.instance_id} at step {live.step})"
            )
    return _reentry_rule(draft, journey)


def _reentry_rule(draft: Draft, journey: CompiledJourney) -> str | None:
    """The journey's re-entry rule: ``never`` again, ``after_exit`` (and its cooldown), or ``always`` (cooldown since entry)."""
    rule = journey.journey.entry.reentry
    hist = draft.history(journey.id)
    if rule.policy == "never":
        if hist is None or hist.entries == 0:
            return None
        return f"reentry: never, and the customer entered before ({hist.entries} time{'s' if hist.entries != 1 else ''})"
    if rule.policy == "after_exit":
        live = next((i for i in draft.instances.values() if i.journey_id == journey.id), None)
        if live is not None:
            return f"reentry: after_exit, and the customer is still in the journey (instance {live.instance_id} at step {live.step})"
        since = hist.last_exited_at if hist is not None else None
        what = "exit"
    else:  # always: concurrent instances allowed
        since = hist.last_entered_at if hist is not None else None
        what = "entry"
    if rule.cooldown is None or since is None or draft.now - since >= rule.cooldown:
        return None
    return f"reentry cooldown: last {what} at {iso_utc(since)}, may enter again from {iso_utc(since + rule.cooldown)}"


def _failed_condition(journey: CompiledJourney, where: str, ctx: Ctx) -> str:
    """The first condition of ``entry.when`` or ``entry.profile`` that is false for ``ctx``, with the value it saw."""
    for i, part in enumerate(journey.entry_parts[where]):
        if part.predicate(ctx):
            continue
        text = f"{where}[{i}] {part.text} is false"
        if part.value is not None:
            value = part.value(ctx)
            text += " (the field is missing)" if value is MISSING else f" ({part.field} = {json.dumps(value, default=str)})"
        return text
    return "the conditions are false"  # pragma: no cover - compile_all is the conjunction of these
