"""The handlers of the steps that contact nobody: ``update_profile`` and ``emit`` (``journey/effects.py`` is their format).

Both run at once and go on to ``next``; neither asks the basket.

* ``update_profile`` changes the draft's profile (:meth:`Draft.change_profile`): every
  condition evaluated after it in the same call (later steps, branches, other journeys'
  instances and entry checks) and every later message sees the change.
* ``emit`` builds an :class:`~orchestrator.actions.Emit` with a deterministic record id
  (:func:`~orchestrator.engine.ids.emit_id`: customer, journey, version, entry event, step
  visit), so a replayed batch publishes the same id and consumers deduplicate on it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.actions import Emit
from orchestrator.engine.draft import Draft
from orchestrator.engine.ids import emit_id
from orchestrator.fastmodel import fast_build, fast_new
from orchestrator.journey.conditions import MISSING
from orchestrator.journey.effects import EmitStep, UpdateProfileStep, read_values
from orchestrator.journey.loader import CompiledJourney
from orchestrator.state import PROFILE_TAGS, Instance


def update_profile_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: UpdateProfileStep) -> str | None:
    """Set and clear attributes, add and remove tags; the trace says what changed (and what a missing field left alone)."""
    profile = draft.profile
    attributes = profile.attributes
    new_attrs = dict(attributes)
    done: dict[str, Any] = {}
    kept: list[str] = []
    for name, value, _cut in read_values(step_def.plan, draft.context(inst)):
        if value is MISSING:
            kept.append(name)
            continue
        new_attrs[name] = value
        done[name] = value
    cleared = [name for name in step_def.cleared if new_attrs.pop(name, MISSING) is not MISSING]
    tags = set(profile.tags)
    added = sorted(set(step_def.add_tags) - tags)
    removed = sorted(tags & set(step_def.remove_tags))
    detail: dict[str, Any] = {"set": done, "cleared": cleared, "tags_added": added, "tags_removed": removed}
    if kept:
        detail["unchanged"] = kept  # {from: FIELD} without a default, and the field was missing
    if new_attrs != attributes or added or removed:
        fields = profile.__dict__.copy()
        fields["attributes"] = new_attrs
        if added or removed:
            fields["tags"] = sorted((tags | set(added)) - set(removed))[-PROFILE_TAGS:]
        profile = fast_build(type(profile), fields)
    draft.change_profile(inst, profile, step_id, step_def.next, **detail)
    return step_def.next


def emit_step(draft: Draft, inst: Instance, journey: CompiledJourney, step_id: str, step_def: EmitStep) -> str | None:
    """The record (literals, fields read now; strings cut to the bound), under its deterministic id."""
    record: dict[str, Any] = {}
    truncated: list[str] = []
    for name, value, cut in read_values(step_def.plan, draft.context(inst)):
        record[name] = None if value is MISSING else value
        if cut:
            truncated.append(name)
    emit = fast_new(
        Emit,
        kind="emit",
        record_id=emit_id(draft.customer_id, inst, step_id),
        topic=step_def.topic,
        customer_id=draft.customer_id,
        journey_id=inst.journey_id,
        journey_version=inst.version,
        instance_id=inst.instance_id,
        step_id=step_id,
        event_id=inst.ctx_event_id,
        record=record,
        truncated=truncated,
        at=draft.now,
    )
    draft.publish(inst, emit, step_def.next)
    return step_def.next
