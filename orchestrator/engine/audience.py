"""Entering customers by audience: campaign runs (:class:`AudienceCheck`) and segment qualification.

A campaign run reaches a customer as an :class:`~orchestrator.events.AudienceCheck`,
published by the worker that owns the customer (``orchestrator.runtime.campaigns``). The
engine decides: the run is deduplicated like an event id (a customer enters at most once
per run, however often the check is redelivered or re-published after a crash), the
audience's conditions are checked on what we know about the customer *now*, then the
journey's re-entry rule. The instance's entry event is the run itself
(``audience:<journey>:<run>``, :func:`orchestrator.engine.ids.audience_event_id`), so its
send ids are the same on every replay. The traces of a check (``entered``, ``not_entered``,
``duplicate``) and the sends of the instances it starts carry the run id (``Trace.run_id``,
``Send.run_id``): nobody downstream parses it out of an id.

``qualify: on_change`` audiences are checked after every event that reaches the full
engine path: a customer who comes to qualify enters then, with that event as the entry
event. Customers the re-entry rule keeps out are not traced there (with ``never`` that
would be every later event).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.actions import Action
from orchestrator.dedupe import EngineLimits, remember
from orchestrator.engine.draft import Draft, duplicate_trace
from orchestrator.engine.entry import reentry_refusal
from orchestrator.engine.ids import audience_event_id
from orchestrator.engine.steps import advance
from orchestrator.events import AudienceCheck, CustomerEvent
from orchestrator.fastmodel import fast_copy, fast_new
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.state import CustomerState

AUDIENCE_EVENT_TYPE = "audience.run"
"""The type of a campaign run's entry event, as traces and ``entry.`` conditions see it."""


def on_audience(
    state: CustomerState, check: AudienceCheck, journeys: JourneySet, now: datetime, limits: EngineLimits
) -> tuple[CustomerState, list[Action]]:
    """A campaign run reached this customer: enter them if they are in the audience and may enter."""
    journey = journeys.live.get(check.journey_id)
    if journey is None or journey.journey.entry.audience is None:
        return state, []  # the campaign was retired or changed since the run was published
    entry = run_event(check)
    recent = remember(state.recent_event_ids, entry.event_id, now, limits)
    if recent is None:  # this run reached the customer before
        return state, [duplicate_trace(state.customer_id, check.journey_id, entry, now, check.run_id)]
    ctx = Ctx(entry.type, entry.event_id, entry.occurred_at, entry.data, state.profile, now, instances=state.instances)
    if not journey.audience_when(ctx):
        return fast_copy(state, recent_event_ids=recent), []  # no longer in the audience: nothing to say per customer
    draft = Draft(state, journeys, now)
    why_not = reentry_refusal(draft, journey)
    if why_not is not None:
        draft.not_entered(journey, entry, why_not, check.run_id)
    else:
        inst = draft.start_instance(journey, entry, check.run_id)
        advance(draft, inst, journey, journey.journey.start)
    return draft.finish(recent_event_ids=recent), draft.actions


def qualify(draft: Draft, event: CustomerEvent, ctx: Ctx, triggered: list[CompiledJourney]) -> None:
    """Enter the customer into every ``qualify: on_change`` journey they now qualify for (and may enter)."""
    for journey in draft.journeys.qualifying:
        if any(journey is t for t in triggered) or not journey.audience_when(ctx) or reentry_refusal(draft, journey) is not None:
            continue
        inst = draft.start_instance(journey, event)
        advance(draft, inst, journey, journey.journey.start)


def run_event(check: AudienceCheck) -> CustomerEvent:
    """The entry event of an instance a campaign run started."""
    return fast_new(
        CustomerEvent,
        event_id=audience_event_id(check.journey_id, check.run_id),
        customer_id=check.customer_id,
        type=AUDIENCE_EVENT_TYPE,
        occurred_at=check.due_at,
        data={"journey": check.journey_id, "run": check.run_id},
    )
