"""The pure journey engine: ``step(state, message, journeys, now) -> (state, actions)``.

Deterministic and side-effect free: no I/O, no wall clock (``now`` is given), no
randomness (splits hash the customer id with blake2b). The input state is never
mutated; the returned state shares every part that did not change.

One call handles one message:

* :class:`~orchestrator.events.CustomerEvent` — deduplicated by event id (an id seen
  within ``limits.dedupe_window`` of engine time is a duplicate: one "duplicate"
  :class:`~orchestrator.actions.Trace`, nothing else; see ``dedupe.remember``), folded into
  the profile, then: goals / exits end live instances, awaited events move waiting
  instances, and the event may start new instances (entry trigger + conditions +
  re-entry rule). Consent events also emit :class:`~orchestrator.actions.ConsentChange`.
* :class:`~orchestrator.events.TimerFired` — a timeout, delay, send window or
  deferred send came due. Unknown (stale, duplicate) timer ids are ignored.
* :class:`~orchestrator.events.AudienceCheck` — a campaign run reached the customer:
  enter them if they are in the audience and may enter (``engine/audience.py``).
* :class:`~orchestrator.actions.GateOutcome` — the basket's decision on a
  :class:`~orchestrator.actions.Send` the engine emitted; the engine answers with
  exactly one :class:`~orchestrator.actions.Disposition` and continues the journey.

An instance stops ("parks") at a wait step (awaited events + a timeout timer), a delay
or window (a timer), or a deferred send (a timer); at a send step it holds the send until
the gate answers, within the same message. It never parks without a timer or a gate
answer pending, and a state the processor returns never waits for a gate answer.

Where things are:

* this module: :func:`step`, the one entry point;
* :mod:`~orchestrator.engine.messages`: what an event and a due timer do;
* :mod:`~orchestrator.engine.send`: a send's story: the send step, the send, the basket's answer;
* :mod:`~orchestrator.engine.steps`: :func:`~orchestrator.engine.steps.advance` and one handler per step type;
* :mod:`~orchestrator.engine.draft`: the working copy of the state for one call, whose verbs
  (enter a step, start a send, wait, delay, defer, match, end, ...) are the only writers;
* :mod:`~orchestrator.engine.profile`: folding an event into the profile;
* :mod:`~orchestrator.engine.ids`: every id format (instances, campaign runs, sends, timers) and split buckets.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.actions import Action, GateOutcome
from orchestrator.dedupe import DEFAULT_LIMITS, EngineLimits
from orchestrator.engine.audience import on_audience
from orchestrator.engine.ids import choose_variant, split_bucket
from orchestrator.engine.messages import on_event, on_timer
from orchestrator.engine.profile import fold_profile
from orchestrator.engine.send import on_gate
from orchestrator.engine.steps import MAX_TRANSITIONS
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.journey.loader import JourneySet
from orchestrator.state import CustomerState

__all__ = ["MAX_TRANSITIONS", "choose_variant", "fold_profile", "split_bucket", "step"]


def step(
    state: CustomerState,
    message: CustomerEvent | TimerFired | GateOutcome | AudienceCheck,
    journeys: JourneySet,
    now: datetime,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> tuple[CustomerState, list[Action]]:
    """Fold one message into one customer's state; return the new state and the actions to carry out.

    ``limits`` bounds what a customer's state remembers (the dedupe window and id cap).
    """
    cls = type(message)  # exact types first: isinstance() on pydantic (ABC) classes costs more
    if cls is CustomerEvent:
        return on_event(state, message, journeys, now, limits)  # type: ignore[arg-type]
    if cls is GateOutcome:
        return on_gate(state, message, journeys, now)  # type: ignore[arg-type]
    if cls is TimerFired:
        return on_timer(state, message, journeys, now)  # type: ignore[arg-type]
    if isinstance(message, CustomerEvent):
        return on_event(state, message, journeys, now, limits)
    if isinstance(message, TimerFired):
        return on_timer(state, message, journeys, now)
    if isinstance(message, GateOutcome):
        return on_gate(state, message, journeys, now)
    if isinstance(message, AudienceCheck):
        return on_audience(state, message, journeys, now, limits)
    raise TypeError(f"engine.step: unsupported message {type(message).__name__}")
